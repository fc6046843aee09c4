"""The index's side of the encoder seam: which encoder a vector field uses for documents and queries.

Encoders are plug-ins in `ENCODERS`, named by a vector field's `encoder` param (default
`sentence-transformer`: the field's transformer model through `souk.models`, the fastest path within
tolerance on this machine). An encoder is one class or function `(params, queries, probe) -> object with
encode(texts) -> (n, dim) float32`: `params` are the field's completed params (`model`, `dim`,
`max_length`, `normalize`, ...), `queries` says whether it encodes queries, `probe` is a sample of the
texts to come. A remote or Ray encoder registers here and vector fields name it; caching a loaded model
is the encoder's business (the built-in's loader caches per config).
The index reaches the models layer only here, lazily, through `souk.models`' public loaders.

Misuse to avoid: building an `EncoderConfig` by hand for a field; the field's params decide it.
"""
from __future__ import annotations

import contextlib
import functools
import threading
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from souk.plugins import Registry

DEFAULT_ENCODER = "sentence-transformer"
ENCODERS: Registry[Callable[..., Any]] = Registry("encoder")


@ENCODERS.register(DEFAULT_ENCODER)
def sentence_transformer(params: dict[str, Any], queries: bool = False, probe: Sequence[str] = ()) -> Any:
    """The field's transformer model (`model`) through `souk.models.encoder.get_encoder` (cached per config)."""
    from souk.models.encoder import get_encoder

    return get_encoder(encoder_config(params, queries), probe=probe)


def field_encoder(params: dict[str, Any], queries: bool = False, probe: Sequence[str] = ()) -> Any:
    """The encoder a vector field's params name (indexes made before encoders were named: the default)."""
    return ENCODERS.get(params.get("encoder", DEFAULT_ENCODER))(params, queries, probe)


def encoder_config(params: dict[str, Any], queries: bool = False):
    """Documents use `backend` (default: the fastest path within tolerance); queries use `query_backend`
    (default: the fp32 reference; queries are short, so exactness costs little there)."""
    from souk.models.encoder import EncoderConfig

    return EncoderConfig(model=params["model"], max_length=params["max_length"], normalize=params["normalize"],
                         batch_size=params["batch_size"], backend=params["query_backend" if queries else "backend"])


def model_record(params: dict[str, Any]) -> dict[str, Any]:
    """What the manifest records for a vector field: model, dimension, the document and query paths in use and
    what was measured for them on this machine (docs/s, cosine to torch fp32); another encoder than the
    default records its name."""
    from souk.models.backends import cached_choice, choose_backend

    if params.get("encoder", DEFAULT_ENCODER) != DEFAULT_ENCODER:
        return {"model": params["model"], "dim": params["dim"], "encoder": params["encoder"]}

    config = encoder_config(params)
    choice = choose_backend(config) if config.backend == "auto" else cached_choice(config)
    backend = choice["backend"] if config.backend == "auto" and choice is not None else config.backend
    query = params["query_backend"]
    if query in ("auto", "exact"):
        query = (choice or {}).get("backend" if query == "auto" else "exact", "torch-fp32")
    paths = (choice or {}).get("paths", {})
    measured = {name: paths[name] for name in {backend, query, "torch-fp32"} if "docs_per_s" in paths.get(name, {})}
    return {"model": config.model, "dim": params["dim"], "max_length": config.max_length, "backend": backend,
            "query_backend": query, "measured": measured,
            "machine": (choice or {}).get("machine", {}).get("cpu"),
            "capped_to_avx2": (choice or {}).get("capped_to_avx2")}


def query_path_here(params: dict[str, Any]) -> dict[str, Any]:
    """The path queries of a vector field take in this process now (`query_backend`, as `get_encoder` resolves it;
    "auto" where nothing was measured: the first query measures) and whether this machine measured it
    (`measured_here`): the manifest's record is what the committing
    machine measured, and a copied index or a cleared cache resolves differently. Reads small files only."""
    from souk.models.backends import cached_choice
    from souk.models.encoder import exact_path

    if params.get("encoder", DEFAULT_ENCODER) != DEFAULT_ENCODER:
        return {}
    config = encoder_config(params, queries=True)
    if config.backend == "exact":
        query, measured = exact_path(config)
        return {"query_backend": query, "measured_here": measured}
    choice = cached_choice(config)
    if config.backend == "auto":  # measured by the first query where nothing is yet
        return {"query_backend": choice["backend"] if choice else "auto", "measured_here": choice is not None}
    return {"query_backend": config.backend, "measured_here": choice is not None}


_READY: dict[tuple[str, int, str], list[np.ndarray]] = {}  # (model, max_length, text) -> vectors computed elsewhere
_READY_LOCK = threading.Lock()


def _ready_key(params: dict[str, Any], text: str) -> tuple[str, int, str]:
    return (params["model"], params["max_length"], text)


@contextlib.contextmanager
def precomputed_vectors(params: dict[str, Any], texts: Sequence[str], vectors: np.ndarray) -> Iterator[None]:
    """Inside the block, `encode_documents` takes these texts' vectors as given (computed by the same model
    elsewhere, e.g. a Ray actor pool) instead of encoding them here."""
    keys = [_ready_key(params, t) for t in texts]
    with _READY_LOCK:
        for key, vec in zip(keys, vectors):
            _READY.setdefault(key, []).append(vec)
    try:
        yield
    finally:
        with _READY_LOCK:
            for key in keys:
                stack = _READY.get(key)
                if stack:
                    stack.pop()
                    if not stack:
                        del _READY[key]


def document_texts(schema: Any, params: dict[str, Any], batch: Sequence[dict]) -> list[str]:
    """The text a vector field encodes for each document (extracted values): its sources joined."""
    sources = params["source"] or schema.content_fields()
    return [" ".join(_text(v[s]) for s in sources if v.get(s)) for v in batch]


def _text(value: Any) -> str:
    """A field value as text for an encoder (keyword lists joined by spaces)."""
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def encode_documents(params: dict[str, Any], texts: list[str], progress: bool = True,
                     description: str = "encoding") -> np.ndarray:
    """(len(texts), dim) float32 vectors of documents, for the writer to store; resumable (see
    `souk.models.checkpoints.encode_resumable`). Texts given to `precomputed_vectors` are not encoded again."""
    from souk.models.checkpoints import encode_resumable

    out = np.zeros((len(texts), params["dim"]), dtype=np.float32)
    missing = list(range(len(texts)))
    if _READY:
        with _READY_LOCK:
            ready = [_READY.get(_ready_key(params, t)) for t in texts]
        missing = [i for i, r in enumerate(ready) if not r]
        for i, r in enumerate(ready):
            if r:
                out[i] = r[-1]
    if missing:
        todo = [texts[i] for i in missing]
        encoder = field_encoder(params, probe=todo)
        if getattr(encoder, "fingerprint", None) is None:  # a plug-in without one: no checkpoints
            out[missing] = np.asarray(encoder.encode(todo), dtype=np.float32).reshape(len(todo), -1)
        else:
            out[missing] = encode_resumable(encoder, todo, progress=progress, description=description)
    return out


def encode_queries(params: dict[str, Any], texts: Sequence[str]) -> np.ndarray:
    """Model-space query vectors (same model, truncation and normalization as the documents); a blank
    query is a zero row, which `VectorSet.search` answers with nothing."""

    out = np.zeros((len(texts), params["dim"]), dtype=np.float32)
    rows = [i for i, t in enumerate(texts) if str(t).strip()]
    if rows:
        out[rows] = _batched(field_encoder(params, queries=True, probe=texts))([texts[i] for i in rows])
    return out


@functools.lru_cache(maxsize=8)
def _batched(encoder: Any):
    """The encoder's queries micro-batched: concurrent searches (a server's) share forward passes."""
    from souk.models.batching import MicroBatcher

    return MicroBatcher(encoder.encode)
