"""Inference paths for transformer encoders, and the measured choice between them.

Paths (registry `BACKENDS`, names persisted with the index):
  torch-fp32     the reference; always available.
  torch-bf16     bf16 weights; offered only when the CPU has bf16 instructions (AMX or AVX-512 BF16).
  onnx-fp32      ONNX Runtime on the fp32 export (exact).
  openvino-fp32  OpenVINO on the same export, f32 precision forced (exact; AMX would otherwise run bf16).
  openvino-bf16  OpenVINO on the same export in bf16 (cosine 0.99998 to fp32 on SciFact: within the exact bar);
                 offered only when the CPU has bf16 instructions and is not capped to AVX2.
  onnx-int8      ONNX Runtime, int8 dynamic quantization (per-channel weights; 7-bit `reduce_range` weights
                 on CPUs without VNNI, where full-range u8*s8 products saturate); the feed-forward output
                 projections stay fp32 (`fp32_matmuls`: cosine 0.9966 / 0.9947 instead of 0.9933 / 0.9894,
                 Intel capped to AVX2). Without VNNI int8 buys little (`LOSSY_MIN_GAIN`): on an AVX2-only AMD
                 EPYC it took 66.7 ms of CPU a SciFact doc against openvino-fp32's 82.4 (1.24x), and every variant
                 that keeps more in fp32 for quality gave the gain back (`fp32_matmuls`).
  openvino-int8  OpenVINO, NNCF post-training int8 (SmoothQuant, calibrated on a slice of the caller's
                 texts, one export per calibration set: calibrated on short product names it gave cosine 0.74 on
                 SciFact abstracts); offered only with VNNI/AMX. On AVX2 (capped) it measured slower than
                 fp32 (8.9 vs 14.8 docs/s on one thread) and lossy: cosine 0.926 / 0.832 (u8*s8 saturation),
                 0.9925 / 0.987 with NNCF's `OverflowFix.ENABLE` (7-bit weights), below `INT8_TOLERANCE`.
                 NNCF int8 weight compression (f32 activations) on an AVX2-only AMD EPYC: 81.3 ms of CPU a
                 SciFact doc vs 79.9 in f32 (with or without dynamic quantization), cosine 0.9994: no path.
OpenVINO paths run one stream per core (one thread each, `StreamedModel`): a batch job's batches (of about
equal padded tokens, `balanced_batches`) go to the streams in turn, one call's rows are split across them, so no
thread waits at a barrier for a core another process holds (measured on Intel at load 17 on 2 cores: bf16 4.27x
sentence-transformers with streams, 2.95x with one 2-thread stream; fp32 capped to AVX2 1.15x vs 0.93x; on an
AVX2-only AMD EPYC, openvino-fp32 streams 82.4 ms of CPU a SciFact doc, one 2-thread LATENCY model 0.89x its
docs/s). ONNX Runtime runs the same way (`OrtStreams`: 96.9 ms a doc there, 100.6 in one 2-thread session).
`choose_backend` probes each offered path on a slice of the caller's texts and keeps the fastest whose
embeddings stay within its tolerance of fp32 (`TOLERANCE` for exact paths, `INT8_TOLERANCE` for int8, which must
also run `LOSSY_MIN_GAIN` times the fastest exact path;
measurements cached per machine under `cache_dir()`); `exact` names the path queries use: the exact one quickest to load
(onnx-fp32, then
openvino-fp32), else the fastest exact one.
Exports (ONNX, OpenVINO IR) are built once into `cache_dir()/models/` and hash-checked against their
`export.json` on every load; one that fails the check, or is not owned by this user, is rebuilt. The fp32 ONNX
export of a BERT is written from its weights (`onnx_bert`, no torch: a query process with a cold cache takes
onnx-fp32 in about a second); other architectures are traced with torch.
Never assume a capability: every path is checked against what the machine reports; a process capped to AVX2
(`capped_to_avx2`, set up by `isa.avx2_env`) is offered only what runs on an AVX2-only CPU. The CPUID mask
(`isa.cpuid_masked`) caps every library; the variables alone (`isa.CAP_ENV`: oneDNN, ATen, MKL) leave OpenVINO's
MLAS GEMMs on AVX-512 and cannot cap ONNX Runtime, whose paths are then left out. Capped, OpenVINO compiles only in
f32 (its bf16 Softmax has no AVX2 kernel).

onnx-int8 quantizes activations per batch, so a text's vector shifts slightly with its batch mates
(cosine > 0.99 to fp32 either way).

Misuse to avoid: comparing paths on different texts or truncation; `choose_backend` measures them on one probe.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np

from souk.errors import ModelError
from souk.models.machine import Machine, detect_machine
from souk.models.registry import ModelCard, cache_dir, model_card
from souk.models.store import file_sha256

if TYPE_CHECKING:
    from souk.models.encoder import EncoderConfig

Forward = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (input_ids, attention_mask) -> mean-pooled (n, dim)
# A path's embeddings vs torch-fp32 on the probe. Exact paths (fp32 on another runtime, bf16) must stay
# near-lossless (bf16: cosine 0.99995, no nDCG change on SciFact); int8 paths get their own bar (OpenVINO int8
# with SmoothQuant on Intel AMX: cosine 0.997 mean / 0.995 min, |delta nDCG@10| <= 0.005 on SciFact dev,
# `souk bench encoder`).
# onnx-int8 all int8 (dynamic activations: 0.993 / 0.986) missed it; with its feed-forward output projections in
# fp32 (`fp32_matmuls`) it measured 0.9966 / 0.9947 and is chosen when fastest.
TOLERANCE = {"cos_mean": 0.999, "cos_min": 0.995}
INT8_TOLERANCE = {"cos_mean": 0.995, "cos_min": 0.99}
# A lossy (int8) path must also buy a real speed-up over the fastest exact path within its bar. Measured on an
# AVX2-only AMD EPYC (no VNNI): onnx-int8 ran 1.29x openvino-fp32 (27.0 vs 21.0 docs/s, cosine 0.9969 / 0.9954)
# and cost 0.0065 nDCG@10 of dense recall on SciFact dev (0.6201 -> 0.6136): not worth it. There fp32 runs near
# the FMA units' peak (82 ms of CPU for a 256-token doc, ~5.4 GFLOP), so int8 without VNNI cannot double it; in
# CPU ms a doc (48 SciFact docs, best of 6): openvino-fp32 82.4, onnx-int8 66.7, int8 on ONNX Runtime's fused
# BERT graph 68.2, u8 weights 75.5 (cosine 0.9974 / 0.9958), only the feed-forward input projections int8
# 80.4 (0.9983 / 0.9971); all 1.02-1.24x, none at this bar. In docs/s at load ~1.4: openvino-fp32 22.8,
# onnx-fp32 17.8, onnx-int8 27.0 (1.18x), u8 weights 26.3 (1.15x), feed-forward inputs only 23.4 (1.03x).
LOSSY_MIN_GAIN = 1.5
ONNX_FORMAT = 3  # bump when an export or the set of paths changes: cached exports and choices are keyed by it
PROBE_DOCS = 48
PROBE_ROUNDS = 3
CHOICE_FORMAT = 4  # bump when the probe changes: cached choices are keyed by it (exports by ONNX_FORMAT)
REFERENCE = "torch-fp32"


def quiet_transformers() -> None:
    """Silence transformers' loading bars and warnings (stderr stays readable)."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def mean_pool(hidden, mask):
    """Mean of the token vectors under the attention mask (torch tensors)."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


# ---- the paths -------------------------------------------------------------------------------
def _torch_forward(dtype_name: str) -> Callable[[ModelCard], Forward]:
    def load(card: ModelCard) -> Forward:
        import torch
        from transformers import AutoModel

        quiet_transformers()
        net = AutoModel.from_pretrained(str(card.path), dtype=getattr(torch, dtype_name)).eval()

        def forward(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                m = torch.from_numpy(mask)
                hidden = net(input_ids=torch.from_numpy(ids), attention_mask=m).last_hidden_state
                return mean_pool(hidden.float(), m).numpy()

        return forward

    return load


# ---- exported models: built once into the cache, hash-checked on every load -----------------------
def _ours(path: Path) -> bool:
    """A real file or folder owned by this user that no one else may write (else: not loaded)."""
    import stat

    try:
        st = os.lstat(path)
    except OSError:
        return False
    if stat.S_ISLNK(st.st_mode):
        return False
    return st.st_uid == os.getuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _stamp(path: Path) -> list[int]:
    st = os.stat(path)
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _verified(folder: Path) -> bool:
    """True when `folder` holds exactly the files its `export.json` lists, each with the listed sha256. A full
    check is remembered in `verified.json` by each file's inode, size, mtime and ctime (ctime changes with any
    write and cannot be set back), so later loads skip hashing files that were not touched since."""
    meta, seen = folder / "export.json", folder / "verified.json"
    if not (_ours(folder) and _ours(meta)):
        return False
    try:
        files = json.loads(meta.read_text())["files"]
        names = {p.name for p in folder.iterdir() if not p.name.startswith(".verified.")} - {
            "export.json",
            "verified.json",
        }
        if not files or names != set(files) or not all(_ours(folder / n) for n in files):
            return False
        stamps = {n: _stamp(folder / n) for n in files}
        if _ours(seen) and json.loads(seen.read_text()) == {"files": files, "stamps": stamps}:
            return True
        if not all(file_sha256(folder / n) == digest for n, digest in files.items()):
            return False
        tmp = folder / f".verified.{os.getpid()}"
        tmp.write_text(json.dumps({"files": files, "stamps": stamps}))
        os.replace(tmp, seen)
        return True
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def exported(card: ModelCard, kind: str, build: Callable[[Path], None], **meta) -> Path:
    """The folder of export `kind` of the model, built by `build(folder)` once (atomically) and verified by
    hash on every load: a damaged or foreign export is removed and built again."""
    return exported_as(f"{card.slug}-{card.version}", card.key, kind, build, **meta)


def exported_as(stem: str, model_key: str, kind: str, build: Callable[[Path], None], **meta) -> Path:
    """`exported` for any model: the folder `cache_dir()/models/<stem>-<kind>`, `model_key` recorded in it."""
    import shutil

    out = cache_dir() / "models" / f"{stem}-{kind}{ONNX_FORMAT}"
    if out.exists():
        if _verified(out):
            return out
        shutil.rmtree(out, ignore_errors=True)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True, mode=0o700)
    try:
        build(tmp)
        files = {p.name: file_sha256(p) for p in sorted(tmp.iterdir())}
        (tmp / "export.json").write_text(json.dumps({"kind": kind, "model": model_key, "files": files, **meta}))
        os.replace(tmp, out)
    except OSError:  # another process won the race: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _export_onnx(card: ModelCard, target: Path) -> None:
    """fp32 ONNX of the model with mean pooling inside (inputs input_ids, attention_mask; output embedding): written
    from the weights for a BERT (`onnx_bert`, no torch), traced with torch for any other architecture."""
    from souk.models.onnx_bert import NotBert, write_bert_onnx

    try:
        return write_bert_onnx(card.path, target, head="mean")
    except NotBert:
        pass
    try:
        import onnx  # noqa: F401  (torch.onnx.export needs it)
        import torch
        from transformers import AutoModel
    except ImportError as e:
        raise ModelError(f"the ONNX paths need {e.name}: pip install onnx onnxruntime") from e
    quiet_transformers()
    net = AutoModel.from_pretrained(str(card.path), attn_implementation="eager").eval()

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, input_ids, attention_mask):
            return mean_pool(self.net(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state,
                             attention_mask)

    example = (torch.tensor([[1, 5, 2], [1, 2, 0]]), torch.tensor([[1, 1, 1], [1, 1, 0]]))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Pooled(), example, str(target), input_names=["input_ids", "attention_mask"],
                          output_names=["embedding"], opset_version=17, dynamo=False,
                          dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                                        "embedding": {0: "batch"}})


def onnx_fp32_path(card: ModelCard) -> Path:
    """The fp32 ONNX export of the model (mean pooling inside), created once and cached."""
    return exported(card, "onnx", lambda d: _export_onnx(card, d / "model.onnx")) / "model.onnx"


def built_onnx_fp32(card: ModelCard) -> Path | None:
    """The model's fp32 ONNX export if it was built already and verifies (never builds: building needs torch)."""
    folder = cache_dir() / "models" / f"{card.slug}-{card.version}-onnx{ONNX_FORMAT}"
    return folder / "model.onnx" if _verified(folder) else None


def unmeasured_exact(model: str) -> str:
    """The exact path for queries while nothing was measured on this machine (another machine's signature, a
    cleared cache): onnx-fp32 where ONNX Runtime runs here and the export is built or can be written without torch
    (a BERT: about a second, `onnx_bert`), so a query process never imports torch; else torch-fp32."""
    from souk.models.onnx_bert import writable

    card = model_card(model)
    if _onnx_missing(detect_machine()) is None and (built_onnx_fp32(card) is not None or writable(card.path)):
        return "onnx-fp32"
    return REFERENCE


def fp32_matmuls(model_path: Path) -> list[str]:
    """The MatMul nodes an int8 export keeps in fp32: each layer's feed-forward output projection
    (`.../output/dense/MatMul`, not the attention's), whose input (after GELU) has outliers that per-tensor
    activation scales lose. MiniLM-L6 on 160 SciFact abstracts, Intel capped to AVX2: cosine to fp32 0.9933 /
    0.9894 all int8, 0.9966 / 0.9947 with these six in fp32 (only layer 0's: 0.9945 / 0.9913). On an AVX2-only
    AMD EPYC (240 abstracts, wall time vs onnx-fp32 under load): these six 1.36x, 0.9966 / 0.9940; also the
    attention output projections 1.36x, 0.9968 / 0.9936; also layers 0 and 5 whole 1.22x, 0.9974 / 0.9955;
    per-tensor weights 1.27x, 0.9895 / 0.9831."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    return [n.name for n in graph.node if n.op_type == "MatMul" and "/output/dense/" in n.name
            and "/attention/" not in n.name]


def onnx_int8_path(card: ModelCard, reduce_range: bool = False) -> Path:
    """The int8 ONNX export (dynamic quantization, per-channel weights; `fp32_matmuls` kept fp32). `reduce_range`
    (7-bit weights) is what CPUs without VNNI need: their u8*s8 multiply-add saturates on full-range weights."""
    def build(folder: Path) -> None:
        try:
            from onnxruntime.quantization import QuantType, quantize_dynamic
        except ImportError as e:
            raise ModelError(f"the onnx-int8 path needs {e.name}: pip install onnxruntime") from e
        source = onnx_fp32_path(card)
        root, level = logging.getLogger(), logging.getLogger().level
        root.setLevel(logging.ERROR)  # the quantizer logs advice about pre-processing on the root logger
        try:
            quantize_dynamic(str(source), str(folder / "model.int8.onnx"), weight_type=QuantType.QInt8,
                             per_channel=True, reduce_range=reduce_range, nodes_to_exclude=fp32_matmuls(source))
        finally:
            root.setLevel(level)

    return exported(card, "onnx-int8mr" if reduce_range else "onnx-int8m", build) / "model.int8.onnx"


def ort_session(path: Path, threads: int | None = None):
    """An ONNX Runtime CPU session on `threads` threads (default: the usable cores)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or detect_machine().threads
    opts.inter_op_num_threads = 1
    # Its threads would spin after each run, on cores the next stage needs (a query's encoding, then the
    # cross-encoder's OpenVINO streams): `full` on homedepot at load 2.5, cross stage p50 51-66 ms vs 84-93 spinning.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class OrtStreams:
    """ONNX Runtime run like OpenVINO's streams: one single-threaded run per core side by side (a session's `run`
    is thread-safe; ONNX Runtime releases the GIL), so no thread waits at an intra-op barrier for a core another
    process holds. One call's rows are split across the runs (`split_rows`); `map_batches` keeps every run busy
    with whole batches. A single row runs on the calling thread."""

    def __init__(self, path: Path, streams: int | None = None):
        from concurrent.futures import ThreadPoolExecutor

        self.streams = max(1, streams or detect_machine().threads)
        self.session = ort_session(path, 1)
        self._pool = ThreadPoolExecutor(self.streams, thread_name_prefix="souk-ort") if self.streams > 1 else None

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0]

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self.run({"input_ids": ids, "attention_mask": mask})

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """The first output for one batch of any model's `inputs` (rows in order), its rows split across the runs
        (`split_rows`; a cross-encoder's pairs too)."""
        n = len(next(iter(inputs.values())))
        if self._pool is None or n < 2:
            return self.session.run(None, inputs)[0]
        parts = split_rows(inputs, self.streams)
        done = [self._pool.submit(lambda p: self.session.run(None, p)[0], part) for _, part in parts]
        outs = [f.result() for f in done]
        out = np.empty((n, *outs[0].shape[1:]), dtype=np.float32)
        for (rows, _), o in zip(parts, outs):
            out[rows] = o
        return out

    def map_batches(self, batches: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]],
                    sink: Callable[[np.ndarray, np.ndarray], None]) -> None:
        """Every (rows, ids, mask) batch run on the streams; `sink(rows, output)` once per batch, in order. A job of
        one batch (a query) runs on the calling thread: no hand-over to a pool thread that may wait for a core."""
        jobs = iter(batches)
        head = list(itertools.islice(jobs, 2))
        if self._pool is None or len(head) == 1:
            for rows, ids, mask in itertools.chain(head, jobs):
                sink(rows, self._run(ids, mask))
            return
        pending = [(rows, self._pool.submit(self._run, ids, mask)) for rows, ids, mask in itertools.chain(head, jobs)]
        for rows, future in pending:
            sink(rows, future.result())


def _ort_session(path: Path) -> Forward:
    return OrtStreams(path)


def _onnx_forward(card: ModelCard) -> Forward:
    return _ort_session(onnx_int8_path(card, reduce_range=not _has_vnni(detect_machine())))


def _onnx_fp32_forward(card: ModelCard) -> Forward:
    return _ort_session(onnx_fp32_path(card))


# Calibration texts for NNCF: the probe `choose_backend` measures on (the caller's corpus) when there is one,
# else the demo catalog's English names. The export records a hash of what it was calibrated on.
_CALIBRATION: list[str] = []
CALIBRATION_SIZE = 64


def _calibration_texts() -> list[str]:
    if _CALIBRATION:
        return list(_CALIBRATION)
    demo = Path(__file__).resolve().parent.parent / "demo" / "pricewatch.json"
    try:
        rows = json.loads(demo.read_text(encoding="utf-8"))
        return [str(r["name"]["en"]) for r in rows[:CALIBRATION_SIZE] if isinstance(r.get("name"), dict)
                and r["name"].get("en")]
    except (OSError, ValueError, KeyError, TypeError):
        return ["a short text"]


def openvino_int8_folder(card: ModelCard, max_length: int = 256) -> Path:
    """The OpenVINO int8 model (NNCF post-training quantization with SmoothQuant, transformer preset),
    calibrated once on `_calibration_texts()`."""
    texts = _calibration_texts()

    def build(folder: Path) -> None:
        try:
            import nncf
            import openvino as ov
        except ImportError as e:
            raise ModelError(f"the openvino-int8 path needs {e.name}: pip install openvino nncf") from e
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(card.path / "tokenizer.json"))
        tok.no_padding()
        tok.enable_truncation(max_length)
        items = []
        for encoding in tok.encode_batch(texts):
            ids = np.asarray([encoding.ids], dtype=np.int64)
            items.append({"input_ids": ids, "attention_mask": np.ones_like(ids)})
        model = ov.Core().read_model(str(onnx_fp32_path(card)))
        logging.getLogger("nncf").setLevel(logging.ERROR)
        import contextlib
        import sys

        with contextlib.redirect_stdout(sys.stderr):  # NNCF's progress bars: stdout stays one JSON object
            quantized = nncf.quantize(model, nncf.Dataset(items), model_type=nncf.ModelType.TRANSFORMER,
                                      subset_size=len(items))
        ov.save_model(quantized, str(folder / "model.xml"), compress_to_fp16=False)

    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    return exported(card, f"openvino-int8-{digest}", build, calibration=digest, calibration_texts=len(texts))


def openvino_compiled(path: Path, exact: bool, threads: int | None = None):
    """An OpenVINO CPU model compiled for latency on `threads` threads; `exact` forces f32 (AMX would run bf16)."""
    import openvino as ov

    config: dict = {"INFERENCE_NUM_THREADS": threads or detect_machine().threads, "PERFORMANCE_HINT": "LATENCY"}
    if exact:
        config["INFERENCE_PRECISION_HINT"] = "f32"
    return ov.Core().compile_model(str(path), "CPU", config)


class StreamedModel:
    """An OpenVINO CPU model with one stream (one thread) per core: `__call__(inputs)` splits one call's rows
    across the streams, `map(jobs, sink)` keeps every stream busy with whole batches. `precision` is the
    inference precision ("f32", "bf16"; None: OpenVINO's default for this CPU). Thread-safe (one job at a time).
    Misuse: reading a result tensor after the next request started; `sink` gets a copy."""

    def __init__(self, path: Path, precision: str | None, threads: int | None = None, multiple: int = 1):
        import openvino as ov

        self.multiple = multiple  # inputs padded to a multiple of this many columns (`padded_to`)
        self.streams = max(1, threads or detect_machine().threads)
        config: dict = {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": self.streams,
                        "INFERENCE_NUM_THREADS": self.streams}
        if precision:
            config["INFERENCE_PRECISION_HINT"] = precision
        self.compiled = ov.Core().compile_model(str(path), "CPU", config)
        self._queue = ov.AsyncInferQueue(self.compiled, self.streams)
        self._lock = threading.Lock()

    def map(self, jobs: Iterable[tuple[Any, dict[str, np.ndarray]]], sink: Callable[[Any, np.ndarray], None]) -> None:
        """Run every (key, inputs) job on the streams; `sink(key, output)` is called once per job."""
        errors: list[BaseException] = []

        def done(request, key) -> None:
            try:
                sink(key, np.array(request.get_output_tensor(0).data, dtype=np.float32))
            except BaseException as e:  # raised in OpenVINO's thread: handed back to the caller below
                errors.append(e)

        with self._lock:
            self._queue.set_callback(done)
            for key, inputs in jobs:
                self._queue.start_async(padded_to(inputs, self.multiple) if self.multiple > 1 else inputs, key)
            self._queue.wait_all()
        if errors:
            raise errors[0]

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """The output for one batch (rows in order), its rows split across the streams (`split_rows`)."""
        parts = split_rows(inputs, self.streams)
        outs: dict[int, np.ndarray] = {}
        self.map(((i, part) for i, (_, part) in enumerate(parts)), outs.__setitem__)
        out = np.empty((sum(len(rows) for rows, _ in parts), *outs[0].shape[1:]), dtype=np.float32)
        for i, (rows, _) in enumerate(parts):
            out[rows] = outs[i]
        return out


def padded_to(inputs: dict[str, np.ndarray], multiple: int) -> dict[str, np.ndarray]:
    """A batch's 2-D inputs with zero columns appended up to a multiple of `multiple` (padding: the attention mask
    is 0 there, so no row's output changes)."""
    width = next(iter(inputs.values())).shape[-1]
    extra = -width % multiple
    if not extra:
        return inputs
    return {name: np.pad(v, ((0, 0), (0, extra))) if v.ndim == 2 else v for name, v in inputs.items()}


def split_rows(inputs: dict[str, np.ndarray], parts: int) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """A padded batch cut into up to `parts` (rows, inputs) parts of about equal real tokens (by
    `attention_mask`; rows of like length together), each part's padding columns beyond its own longest row
    dropped: a cross-encoder's 20 pairs of 22-44 tokens split in halves no longer run the short half at the
    long half's width. Without a mask: equal row counts, in order. Masked-out columns never change a row's
    output (attention and pooling skip them), so the parts' rows equal the whole batch's."""
    n = len(next(iter(inputs.values())))
    k = max(1, min(parts, n))
    mask = inputs.get("attention_mask")
    if mask is None or mask.ndim != 2:
        return [(p, {name: v[p] for name, v in inputs.items()}) for p in np.array_split(np.arange(n), k)]
    lengths = mask.sum(1)
    order = np.argsort(-lengths, kind="stable")
    ranked = lengths[order]
    if k == 2:  # the cut whose larger part (rows x its longest row) is smallest
        at = np.arange(1, n)
        cuts = [int(at[np.argmin(np.maximum(at * ranked[0], (n - at) * ranked[at]))])]
    else:
        cuts = list(np.searchsorted(np.cumsum(ranked), ranked.sum() * np.arange(1, k) / k, side="right"))
    out = []
    for rows in np.split(order, np.unique(np.clip(cuts, 1, n - 1))) if k > 1 else [order]:
        width = max(int(lengths[rows].max()), 1)
        out.append((rows, {name: v[rows][:, :width] if v.ndim == 2 and v.shape[1] == mask.shape[1] else v[rows]
                           for name, v in inputs.items()}))
    return out


class _StreamedForward:
    """A `Forward` over a `StreamedModel`; `map_batches` runs a whole encoding job on its streams."""

    def __init__(self, model: StreamedModel):
        self.model = model
        self.streams = model.streams

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self.model({"input_ids": ids, "attention_mask": mask})

    def map_batches(self, batches: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]],
                    sink: Callable[[np.ndarray, np.ndarray], None]) -> None:
        self.model.map(((rows, {"input_ids": ids, "attention_mask": mask}) for rows, ids, mask in batches), sink)


# OpenVINO int8 ran 5% faster with inputs padded to 8 columns (its VNNI kernels pack 4 int8 along the sequence in
# attention): scifact, 800 docs in chunks of 256, 80.5-83.3 docs/s unpadded, 85.6-86.8 at 8, 86.3-88.2 at 16, 78.5-86.6
# at 64; openvino-bf16 and onnx-fp32 did not change (53.0-55.8 vs 54.7-57.0; 23.1-25.1 vs 23.7-25.3), and short
# texts (titles) pay for the padding there: only the int8 path pads.
INT8_WIDTH_MULTIPLE = 8


def _openvino(path: Path, precision: str | None, multiple: int = 1) -> Forward:
    return _StreamedForward(StreamedModel(path, precision, multiple=multiple))


def _openvino_fp32_forward(card: ModelCard) -> Forward:
    return _openvino(onnx_fp32_path(card), "f32")


def _openvino_bf16_forward(card: ModelCard) -> Forward:
    return _openvino(onnx_fp32_path(card), "bf16")


def _openvino_int8_forward(card: ModelCard) -> Forward:
    return _openvino(openvino_int8_folder(card) / "model.xml", None, INT8_WIDTH_MULTIPLE)


def set_calibration(texts: Sequence[str]) -> None:
    """Texts NNCF calibrates on when an int8 OpenVINO export is first built (a slice of the caller's corpus)."""
    _CALIBRATION[:] = [str(t) for t in texts][:CALIBRATION_SIZE]


def _bf16_isa_missing(m: Machine) -> str | None:
    if capped_to_avx2():
        return "capped to AVX2"
    if not m.flags & {"amx_bf16", "avx512_bf16"}:
        return "no bf16 instructions (amx_bf16 / avx512_bf16)"
    return None


def _openvino_bf16_missing(m: Machine) -> str | None:
    return _bf16_isa_missing(m) or _module_missing("openvino")


def _bf16_missing(m: Machine) -> str | None:
    why = _bf16_isa_missing(m)
    if why:
        return why
    import torch

    if not torch.backends.mkldnn.is_available() or not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return "torch's oneDNN has no bf16 kernels here"
    return None


def _has_vnni(m: Machine) -> bool:
    return bool(m.flags & {"amx_int8", "avx512_vnni", "avx_vnni"}) and not capped_to_avx2()


def capped_to_avx2() -> bool:
    """True when this process runs as on a CPU without AVX-512, VNNI or AMX: CPUID masked (`isa.cpuid_masked`,
    every library), or oneDNN told to use AVX2 at most (ONEDNN_MAX_CPU_ISA=AVX2: torch and OpenVINO, not their
    MLAS GEMMs; ONNX Runtime not at all). `isa.report()` says which."""
    from souk.models.isa import cpuid_masked, env_capped

    return env_capped() or cpuid_masked()


def _module_missing(name: str) -> str | None:
    import importlib.util

    return None if importlib.util.find_spec(name) is not None else f"{name} is not installed"


def _onnx_missing(m: Machine) -> str | None:
    from souk.models.isa import cpuid_masked

    if capped_to_avx2() and not cpuid_masked():
        return "onnxruntime cannot be capped to AVX2 without the CPUID mask (ONEDNN_MAX_CPU_ISA is set): it " \
            "would not measure this CPU"
    return _module_missing("onnxruntime")


def _int8_missing(m: Machine) -> str | None:
    if capped_to_avx2():
        return _onnx_missing(m)
    if not (_has_vnni(m) or "avx2" in m.flags):
        return "no int8 dot-product instructions (amx_int8 / avx512_vnni / avx_vnni) and no AVX2"
    return _module_missing("onnxruntime")


def _openvino_int8_missing(m: Machine) -> str | None:
    if not _has_vnni(m):  # without VNNI OpenVINO's int8 kernels are slower than fp32 and lose (module docstring)
        return "no int8 dot-product instructions (amx_int8 / avx512_vnni / avx_vnni), or capped to AVX2 (int8 " \
            "measured slower than fp32 there, and below the int8 cosine bar)"
    return _module_missing("openvino") or _module_missing("nncf")


@dataclass(frozen=True)
class BackendSpec:
    """One inference path: why a machine should not use it (None: fine), and how to load it for a model."""

    name: str
    missing: Callable[[Machine], str | None]
    load: Callable[[ModelCard], Forward]


BACKENDS: dict[str, BackendSpec] = {s.name: s for s in (
    BackendSpec("torch-fp32", lambda m: None, _torch_forward("float32")),
    BackendSpec("torch-bf16", _bf16_missing, _torch_forward("bfloat16")),
    BackendSpec("onnx-fp32", _onnx_missing, _onnx_fp32_forward),
    BackendSpec("openvino-fp32", lambda m: _module_missing("openvino"), _openvino_fp32_forward),
    BackendSpec("openvino-bf16", _openvino_bf16_missing, _openvino_bf16_forward),
    BackendSpec("onnx-int8", _int8_missing, _onnx_forward),
    BackendSpec("openvino-int8", _openvino_int8_missing, _openvino_int8_forward),
)}


def check_backend(name: str) -> str:
    """`name` if it is a known path, else a `ModelError` listing them."""
    if name not in BACKENDS:
        raise ModelError(f"unknown encoder backend {name!r}; known: auto, exact, {', '.join(BACKENDS)}")
    return name


@lru_cache(maxsize=4)
def load_forward(backend: str, model: str) -> Forward:
    """The loaded path `backend` for `model` (a registered name or a directory), cached per process."""
    return BACKENDS[check_backend(backend)].load(model_card(model))


@lru_cache(maxsize=4)
def load_tokenizer(model: str, max_length: int):
    """The model's fast tokenizer (tokenizer.json), truncating to `max_length`, unpadded."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_card(model).path / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length)
    return tok


def run_batches(forward: Forward, tokenizer, texts: Sequence[str], batch_size: int, dim: int,
                on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    """(len(texts), dim) float32 pooled vectors, not normalized; batches are formed from length-sorted
    texts to cut padding, and rows come back in input order. A forward with `map_batches` (OpenVINO's
    streams) gets the whole job at once."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    if not len(texts):
        return out
    encs = tokenizer.encode_batch([str(t).strip() for t in texts])
    lengths = np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(encs))
    order = np.argsort(-lengths, kind="stable")
    many = getattr(forward, "map_batches", None)
    groups = balanced_batches(lengths[order], batch_size, 2 * getattr(forward, "streams", 1)) if many else \
        [(start, min(start + batch_size, len(order))) for start in range(0, len(order), batch_size)]

    def batches():
        for start, end in groups:
            rows = order[start:end]
            width = int(lengths[rows].max())
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for j, r in enumerate(rows):
                ids[j, :lengths[r]] = encs[r].ids
                mask[j, :lengths[r]] = 1
            yield rows, ids, mask
            if on_batch:
                on_batch(len(rows))

    if many is not None:
        many(batches(), out.__setitem__)
        return out
    for rows, ids, mask in batches():
        out[rows] = forward(ids, mask)
    return out


def balanced_batches(ranked: np.ndarray, batch_size: int, jobs: int) -> list[tuple[int, int]]:
    """(start, end) slices of lengths sorted longest first, for forwards that run batches side by side
    (OpenVINO's streams): at most `batch_size` rows each, and at least `jobs` batches of about equal padded
    tokens (rows x the first, longest row) when there are rows enough. Batches of equal rows would give one
    stream the longest texts: a 48-text probe in batches of 32 ran its 32 longest on one stream while the other
    idled after the 16 shortest, and measured OpenVINO 1.3-1.5x slower than it encodes a corpus."""
    n = len(ranked)
    budget = max(float(ranked.sum()) / max(1, min(jobs, n)), 1.0)
    out, start = [], 0
    while start < n:
        end = start + 1
        while end < n and end - start < batch_size and (end - start + 1) * ranked[start] <= budget:
            end += 1
        out.append((start, end))
        start = end
    return out


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (zero rows stay zero), in place."""
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x


# ---- the measured choice ---------------------------------------------------------------------
def _choice_path(config: "EncoderConfig") -> Path:
    m = detect_machine()
    card = model_card(config.model)
    from souk.models.isa import cpuid_masked

    key = hashlib.sha1(json.dumps([card.key, config.max_length, m.signature(), ONNX_FORMAT, capped_to_avx2(),
                                   CHOICE_FORMAT] + ([True] if cpuid_masked() else [])).encode()).hexdigest()[:16]
    return cache_dir() / "models" / f"choice-{key}.json"


def cached_choice(config: "EncoderConfig") -> dict | None:
    """The verdict measured earlier for this model, max length and machine; None when there is none (or it is
    unreadable, or not ours)."""
    path = _choice_path(config)
    try:
        if not _ours(path):
            return None
        return verdict(json.loads(path.read_text())["paths"], detect_machine())
    except (OSError, ValueError, KeyError, TypeError, ModelError):
        return None


def choose_backend(config: "EncoderConfig", probe: Sequence[str] = (), refresh: bool = False) -> dict:
    """Measure each path this machine offers on `probe` (docs/s, cosine to fp32); keep the fastest within
    its tolerance. The verdict is cached per model, max length and machine, so it is measured once."""
    m = detect_machine()
    card = model_card(config.model)
    path = _choice_path(config)
    texts = [str(t) for t in probe][:PROBE_DOCS] or ["a short text"]
    texts = (texts * (PROBE_DOCS // len(texts) + 1))[:PROBE_DOCS]
    if probe:  # int8 exports are calibrated on the caller's texts, also when the verdict is remembered
        set_calibration(texts)
    if not refresh:
        cached = cached_choice(config)
        if cached is not None:
            return cached
    tokenizer = load_tokenizer(config.model, config.max_length)
    report: dict[str, dict] = {}
    forwards: dict[str, Forward] = {}
    for name, spec in BACKENDS.items():
        why = spec.missing(m)
        if why:
            report[name] = {"skipped": why}
            continue
        try:
            forwards[name] = load_forward(name, config.model)
        except Exception as e:  # a path that fails to load is simply not chosen
            report[name] = {"skipped": f"failed to load: {e}"}
            continue
        run_batches(forwards[name], tokenizer, texts[:8], config.batch_size, card.dim)  # warm up
    # Paths are timed in turns (the order reversed each round), best of PROBE_ROUNDS: load from other processes
    # falls on each alike (timed one after the other, a busy minute decided between torch and OpenVINO fp32).
    best: dict[str, float] = {n: 0.0 for n in forwards}
    vectors: dict[str, np.ndarray] = {}
    names = list(forwards)
    for r in range(PROBE_ROUNDS):
        for name in names if r % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            vectors[name] = unit_rows(run_batches(forwards[name], tokenizer, texts, config.batch_size, card.dim))
            best[name] = max(best[name], len(texts) / (time.perf_counter() - t0))
    ref = vectors.get(REFERENCE)
    for name in names:
        cos = (vectors[name] * ref).sum(1) if ref is not None else np.ones(len(texts), dtype=np.float32)
        report[name] = {"docs_per_s": round(best[name], 2), "cos_mean": float(cos.mean()), "cos_min": float(cos.min())}
    result = verdict(report, m)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, path)
    _GENERATION[0] += 1
    return result


_GENERATION = [0]


def choice_generation() -> int:
    """How many measurements this process has written (a cached resolution of `exact` is stale once it grows)."""
    return _GENERATION[0]


# Exact paths that load without torch, quickest to load first (measured: onnx-fp32 2.2 s, openvino-fp32 3.2 s,
# torch 10-20 s on 2 busy cores): a query process spends seconds loading and milliseconds encoding a query, so
# queries take the first of these measured within tolerance.
LIGHT_EXACT = ("onnx-fp32", "openvino-fp32")


def lossy(name: str) -> bool:
    """True for the int8 paths: near fp32, not exact (their own cosine bar, and `LOSSY_MIN_GAIN`)."""
    return "int8" in name


def tolerance(name: str) -> dict[str, float]:
    """The cosine bar path `name` must clear against torch-fp32 to be chosen automatically."""
    return INT8_TOLERANCE if lossy(name) else TOLERANCE


def within(name: str, r: dict) -> bool:
    """True when the measured path `name` (a report entry) clears its bar."""
    bar = tolerance(name)
    return "docs_per_s" in r and r["cos_mean"] >= bar["cos_mean"] and r["cos_min"] >= bar["cos_min"]


def verdict(report: dict[str, dict], m: Machine) -> dict:
    """The fastest measured path within its tolerance (applied on read, so a cached report follows it), and
    `exact`, what queries use: the exact path quickest to load (`LIGHT_EXACT`), else the fastest exact one."""
    ok = {n: r for n, r in report.items() if within(n, r)}
    if not ok:
        raise ModelError(f"no encoder path measured within tolerance {TOLERANCE}: {report}")
    fastest_exact = max((ok[n]["docs_per_s"] for n in ok if not lossy(n)), default=0.0)
    ok = {n: r for n, r in ok.items() if not lossy(n) or r["docs_per_s"] >= LOSSY_MIN_GAIN * fastest_exact}
    best = max(ok, key=lambda n: ok[n]["docs_per_s"])
    exact = next((n for n in LIGHT_EXACT if n in ok), None) or \
        max((n for n in ok if not lossy(n)), key=lambda n: ok[n]["docs_per_s"], default=REFERENCE)
    return {"backend": best, "exact": exact, "machine": asdict(m) | {"flags": sorted(m.flags)},
            "capped_to_avx2": capped_to_avx2(),
            "tolerance": {"exact": TOLERANCE, "int8": INT8_TOLERANCE, "int8_min_gain": LOSSY_MIN_GAIN},
            "paths": report}
