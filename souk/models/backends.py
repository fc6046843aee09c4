"""Inference paths for transformer encoders, and the measured choice between them.

Paths (registry `BACKENDS`, names persisted with the index):
  torch-fp32  the reference; always available.
  torch-bf16  bf16 weights; offered only when the CPU has bf16 instructions (AMX or AVX-512 BF16).
  onnx-int8   ONNX Runtime, int8 dynamic quantization (per-channel weights); offered only with VNNI/AMX-int8.
`choose_backend` probes each offered path on a slice of the caller's texts and keeps the fastest whose
embeddings stay within `TOLERANCE` of fp32 (near-lossless; measurements cached per machine under
`cache_dir()`). Never assume a capability: every path is checked against what the machine reports.

onnx-int8 quantizes activations per batch, so a text's vector shifts slightly with its batch mates
(cosine > 0.99 to fp32 either way).

Misuse to avoid: comparing paths on different texts or truncation; `choose_backend` measures them on one probe.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from souk.errors import ModelError
from souk.models.machine import Machine, detect_machine
from souk.models.registry import ModelCard, cache_dir, model_card

if TYPE_CHECKING:
    from souk.models.encoder import EncoderConfig

Forward = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (input_ids, attention_mask) -> mean-pooled (n, dim)
# A path's embeddings vs torch-fp32 on the probe. Near-lossless on purpose: the automatic choice must not
# change rankings measurably (bf16: cosine 0.99995, no nDCG change on SciFact). onnx-int8 (cosine ~0.995,
# nDCG@10 -0.004 on SciFact dev) stays available as an explicit `backend = "onnx-int8"`.
TOLERANCE = {"cos_mean": 0.999, "cos_min": 0.995}
ONNX_FORMAT = 1  # bump when the export changes: cached ONNX files are keyed by it
PROBE_DOCS = 48
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


def onnx_int8_path(card: ModelCard) -> Path:
    """The int8 ONNX export of the model (mean pooling inside), created once and cached."""
    out = cache_dir() / "models" / f"{card.slug}-{card.version}-onnx{ONNX_FORMAT}" / "model.int8.onnx"
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
    net = AutoModel.from_pretrained(str(card.path), attn_implementation="eager").eval()

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, input_ids, attention_mask):
            return mean_pool(self.net(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state, attention_mask)

    tmp = out.parent.with_name(out.parent.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    example = (torch.tensor([[1, 5, 2], [1, 2, 0]]), torch.tensor([[1, 1, 1], [1, 1, 0]]))
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


def _onnx_forward(card: ModelCard) -> Forward:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = detect_machine().threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_int8_path(card)), opts, providers=["CPUExecutionProvider"])
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
    """One inference path: why a machine should not use it (None: fine), and how to load it for a model."""

    name: str
    missing: Callable[[Machine], str | None]
    load: Callable[[ModelCard], Forward]


BACKENDS: dict[str, BackendSpec] = {s.name: s for s in (
    BackendSpec("torch-fp32", lambda m: None, _torch_forward("float32")),
    BackendSpec("torch-bf16", _bf16_missing, _torch_forward("bfloat16")),
    BackendSpec("onnx-int8", _int8_missing, _onnx_forward),
)}


def check_backend(name: str) -> str:
    """`name` if it is a known path, else a `ModelError` listing them."""
    if name not in BACKENDS:
        raise ModelError(f"unknown encoder backend {name!r}; known: auto, {', '.join(BACKENDS)}")
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
    texts to cut padding, and rows come back in input order."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    if not len(texts):
        return out
    encs = tokenizer.encode_batch([str(t).strip() for t in texts])
    lengths = np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(encs))
    order = np.argsort(-lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        width = int(lengths[rows].max())
        ids = np.zeros((len(rows), width), dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for j, r in enumerate(rows):
            ids[j, :lengths[r]] = encs[r].ids
            mask[j, :lengths[r]] = 1
        out[rows] = forward(ids, mask)
        if on_batch:
            on_batch(len(rows))
    return out


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (zero rows stay zero), in place."""
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x


# ---- the measured choice ---------------------------------------------------------------------
def choose_backend(config: "EncoderConfig", probe: Sequence[str] = (), refresh: bool = False) -> dict:
    """Measure each path this machine offers on `probe` (docs/s, cosine to fp32); keep the fastest within
    `TOLERANCE`. The verdict is cached per model, max length and machine, so it is measured once."""
    m = detect_machine()
    card = model_card(config.model)
    key = hashlib.sha1(json.dumps([card.key, config.max_length, m.signature(), ONNX_FORMAT]).encode()).hexdigest()[:16]
    path = cache_dir() / "models" / f"choice-{key}.json"
    if path.exists() and not refresh:
        return verdict(json.loads(path.read_text())["paths"], m)
    texts = [str(t) for t in probe][:PROBE_DOCS] or ["a short text"]
    texts = (texts * (PROBE_DOCS // len(texts) + 1))[:PROBE_DOCS]
    tokenizer = load_tokenizer(config.model, config.max_length)
    report: dict[str, dict] = {}
    ref: np.ndarray | None = None
    for name, spec in BACKENDS.items():
        why = spec.missing(m)
        if why:
            report[name] = {"skipped": why}
            continue
        try:
            forward = load_forward(name, config.model)
        except Exception as e:  # a path that fails to load is simply not chosen
            report[name] = {"skipped": f"failed to load: {e}"}
            continue
        run_batches(forward, tokenizer, texts[:8], config.batch_size, card.dim)  # warm up
        runs = []
        for _ in range(2):
            t0 = time.perf_counter()
            vecs = unit_rows(run_batches(forward, tokenizer, texts, config.batch_size, card.dim))
            runs.append(len(texts) / (time.perf_counter() - t0))
        ref = vecs if name == REFERENCE else ref
        cos = (vecs * ref).sum(1)
        report[name] = {"docs_per_s": round(max(runs), 2), "cos_mean": float(cos.mean()), "cos_min": float(cos.min())}
    result = verdict(report, m)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, path)
    return result


def verdict(report: dict[str, dict], m: Machine) -> dict:
    """The fastest measured path within `TOLERANCE` (applied on read, so a cached report follows it)."""
    ok = {n: r for n, r in report.items() if "docs_per_s" in r
          and r["cos_mean"] >= TOLERANCE["cos_mean"] and r["cos_min"] >= TOLERANCE["cos_min"]}
    if not ok:
        raise ModelError(f"no encoder path measured within tolerance {TOLERANCE}: {report}")
    best = max(ok, key=lambda n: ok[n]["docs_per_s"])
    return {"backend": best, "machine": asdict(m) | {"flags": sorted(m.flags)}, "tolerance": TOLERANCE, "paths": report}
