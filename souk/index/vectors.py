"""vectors/: given a query vector, which documents are nearest?

Raw float32 vectors live in tantivy (a stored bytes field per vector field), so one tantivy commit keeps
documents and vectors in step. The FAISS index is a cache derived from them: `<index>/vectors/<field>/
<commit_id>/` holds `index.faiss` (an `IndexIDMap2` over document keys), the optional fitted transform
(whitening or PCA, applied to documents and queries alike) and `meta.json`. `VectorSet.open` loads the
cache of the searcher's commit, or builds it (incrementally from an older cache when possible), writes it
to a temporary directory and renames it into place.

Misuse to avoid: searching with vectors from another model than the documents', or treating the cache
as the source of truth (delete `vectors/` at will; it is rebuilt).
"""
from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from souk.errors import ConfigError, IndexStateError
from souk.models.encoder import (BACKENDS, MODELS, EncoderConfig, choose_backend, encode_resumable, get_encoder,
                                 model_dim)

FORMAT = 1
EXACT_BELOW = 4096  # filters allowing fewer docs are scored exactly on reconstructed vectors
KEEP_CACHES = 2     # commit caches kept per field (the newest by time); older ones are removed

DEFAULTS: dict[str, Any] = {
    "model": "all-MiniLM-L6-v2", "source": [], "index": "flat", "normalize": True, "max_length": 256,
    "transform": "none", "backend": "auto", "query_backend": "torch-fp32", "batch_size": 32, "ef_search": 64, "nprobe": 16,
}


# ---- FAISS index types -----------------------------------------------------------------------
@dataclass(frozen=True)
class IndexType:
    """How to build one kind of FAISS index (inner product) and how to search it."""

    name: str
    build: Callable[[int, int], Any]              # (dim, n) -> untrained index
    params: Callable[[Any, dict, Any], Any]       # (faiss module, field params, selector) -> SearchParameters
    removable: bool = True                        # supports remove_ids (else deletes force a rebuild)
    native_ids: bool = False                      # IVF keeps keys itself (hashtable direct map); others use IndexIDMap2


def _flat(d: int, n: int):
    import faiss

    return faiss.IndexFlatIP(d)


def _hnsw(d: int, n: int):
    import faiss

    index = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 80
    return index


def _ivfpq(d: int, n: int):
    import faiss

    nlist = max(1, min(int(4 * math.sqrt(n)), n // 39))
    sub = next(s for s in (8, 4, 6, 12, 16, 2, 1) if d % s == 0)
    nbits = max(1, min(8, int(math.log2(max(n, 2) / 39)))) if n < 256 * 39 else 8
    return faiss.IndexIVFPQ(faiss.IndexFlatIP(d), d, nlist, d // sub, nbits, faiss.METRIC_INNER_PRODUCT)


def _sq8(d: int, n: int):
    import faiss

    return faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)


INDEX_TYPES: dict[str, IndexType] = {t.name: t for t in (
    IndexType("flat", _flat, lambda faiss, p, sel: faiss.SearchParameters(sel=sel)),
    IndexType("hnsw", _hnsw, lambda faiss, p, sel: faiss.SearchParametersHNSW(sel=sel, efSearch=p["ef_search"]), removable=False),
    IndexType("ivfpq", _ivfpq, lambda faiss, p, sel: faiss.SearchParametersIVF(sel=sel, nprobe=p["nprobe"]), native_ids=True),
    IndexType("sq8", _sq8, lambda faiss, p, sel: faiss.SearchParameters(sel=sel)),
)}


# ---- params of a `vector` field --------------------------------------------------------------
def validate_params(field) -> dict[str, Any]:
    """Complete and check a vector field's params (idempotent); errors name the key."""
    where = f"fields.{field.name}.params"
    params = dict(field.params or {})
    unknown = set(params) - set(DEFAULTS) - {"dim"}
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}; allowed: {', '.join(sorted([*DEFAULTS, 'dim']))}")
    params = {**DEFAULTS, **params}

    def check(key: str, ok: bool, expected: str) -> None:
        if not ok:
            raise ConfigError(f"{where}.{key}: expected {expected}, got {params[key]!r}")

    check("model", params["model"] in MODELS, "one of " + ", ".join(sorted(MODELS)))
    check("source", isinstance(params["source"], list) and all(isinstance(s, str) for s in params["source"]), "a list of field names")
    check("index", params["index"] in INDEX_TYPES, "one of " + ", ".join(INDEX_TYPES))
    check("normalize", isinstance(params["normalize"], bool), "true or false")
    for key in ("backend", "query_backend"):
        check(key, params[key] in ("auto", *BACKENDS), "one of auto, " + ", ".join(BACKENDS))
    for key, lo, hi in (("max_length", 8, 512), ("batch_size", 1, 4096), ("ef_search", 1, 100_000), ("nprobe", 1, 100_000)):
        check(key, type(params[key]) is int and lo <= params[key] <= hi, f"an integer in {lo}..{hi}")
    dim = model_dim(params["model"])
    check("dim", params.get("dim", dim) == dim, f"{dim} (the dimension of {params['model']})")
    params["dim"] = dim
    t = params["transform"]
    ok = t in ("none", "whiten") or (isinstance(t, str) and t.startswith("pca:") and t[4:].isdigit() and 0 < int(t[4:]) <= dim)
    check("transform", ok, f'"none", "whiten" or "pca:N" with N in 1..{dim}')
    return params


def encoder_config(params: dict[str, Any], queries: bool = False) -> EncoderConfig:
    """Documents use `backend` (default: the fastest path within tolerance); queries use `query_backend`
    (default: the fp32 reference; queries are short, so exactness costs little there)."""
    return EncoderConfig(model=params["model"], max_length=params["max_length"], normalize=params["normalize"],
                         batch_size=params["batch_size"], backend=params["query_backend" if queries else "backend"])


def model_record(field) -> dict[str, Any]:
    """What the manifest records for a vector field: model, dimension and the document path in use."""
    config = encoder_config(field.params)
    backend = config.backend if config.backend != "auto" else choose_backend(config)["backend"]
    return {"model": config.model, "dim": field.params["dim"], "max_length": config.max_length, "backend": backend,
            "query_backend": field.params["query_backend"]}


def encode_documents(field, texts: list[str], progress: bool = True) -> np.ndarray:
    """(len(texts), dim) float32 vectors of documents, for the writer to store; resumable (see
    `souk.models.encoder.encode_resumable`)."""
    encoder = get_encoder(encoder_config(field.params), probe=texts)
    return encode_resumable(encoder, texts, progress=progress, description=f"encoding {field.name}")


# ---- the vector set --------------------------------------------------------------------------
class VectorSet:
    """A FAISS index over document keys plus the fitted transform; vectors in, (keys, scores) out.

    Invariant: every key appears at most once; `search` takes model-space vectors and applies the
    transform (and re-normalization) itself, so callers never transform.
    """

    def __init__(self, index, keys: np.ndarray, params: dict[str, Any], transform=None, meta: dict[str, Any] | None = None):
        self.index = index
        self.keys = np.asarray(keys, dtype=np.int64)  # sorted, unique: the keys present
        self.params = params
        self.transform = transform
        self.meta = meta or {}
        self.kind = INDEX_TYPES[params["index"]]

    # building ----------------------------------------------------------------------------------
    @classmethod
    def build(cls, keys: np.ndarray, vectors: np.ndarray, params: dict[str, Any], transform=None) -> "VectorSet":
        """Index `vectors` under `keys`; fits the configured transform on them unless one is given."""
        import faiss

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        keys = np.asarray(keys, dtype=np.int64)
        if len(np.unique(keys)) != len(keys):
            raise IndexStateError("duplicate keys: each document has one vector")
        if transform is None and params["transform"] != "none":
            transform = _fit_transform(params["transform"], vectors)
        vs = cls(None, np.zeros(0, np.int64), params, transform, {"format": FORMAT, "params": params})
        x = vs._to_index_space(vectors)
        index = vs.kind.build(x.shape[1], len(x))
        if not index.is_trained and len(x):
            index.train(x)
        if vs.kind.native_ids:
            index.set_direct_map_type(faiss.DirectMap.Hashtable)  # reconstruct and remove by key
        vs.index = index if vs.kind.native_ids else faiss.IndexIDMap2(index)
        vs._add(keys, x)
        return vs

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Add or replace vectors by key."""
        keys = np.asarray(keys, dtype=np.int64)
        self.remove(keys)
        self._add(keys, self._to_index_space(np.asarray(vectors, dtype=np.float32)))

    def _add(self, keys: np.ndarray, x: np.ndarray) -> None:
        if len(keys):
            self.index.add_with_ids(x, keys)
            self.keys = np.union1d(self.keys, keys)

    def remove(self, keys: np.ndarray) -> int:
        """Delete vectors by key (absent keys are ignored); returns how many were removed."""
        import faiss

        keys = np.intersect1d(np.asarray(keys, dtype=np.int64), self.keys)
        if not len(keys):
            return 0
        if not self.kind.removable:
            raise IndexStateError(f"a {self.kind.name} index cannot delete vectors; rebuild it")
        sel = faiss.IDSelectorArray(keys) if self.kind.native_ids else faiss.IDSelectorBatch(keys)
        removed = int(self.index.remove_ids(sel))
        self.keys = np.setdiff1d(self.keys, keys)
        return removed

    def __len__(self) -> int:
        return len(self.keys)

    def memory_bytes(self) -> int:
        """Size of the serialized index (what it holds in memory, near enough)."""
        import faiss

        return int(faiss.serialize_index(self.index).nbytes)

    # searching ---------------------------------------------------------------------------------
    def search(self, query_vectors: np.ndarray, k: int, allowed_keys: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k keys and scores per query, shape (queries, k); -1 keys pad short result lists.

        `allowed_keys` restricts results (filters); small allowed sets are scored exactly."""
        import faiss

        q = self._to_index_space(np.atleast_2d(np.asarray(query_vectors, dtype=np.float32)))
        k = max(0, min(k, len(self)))
        if k == 0 or len(q) == 0:
            return np.full((len(q), k), -1, np.int64), np.zeros((len(q), k), np.float32)
        if allowed_keys is None:
            scores, keys = self.index.search(q, k, params=self.kind.params(faiss, self.params, None))
            return keys, scores
        allowed = np.intersect1d(np.asarray(allowed_keys, dtype=np.int64), self.keys)
        if len(allowed) <= EXACT_BELOW:
            return self._exact(q, k, allowed)
        scores, keys = self.index.search(q, k, params=self.kind.params(faiss, self.params, faiss.IDSelectorBatch(allowed)))
        return keys, scores

    def _exact(self, q: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keys = np.full((len(q), k), -1, np.int64)
        scores = np.zeros((len(q), k), np.float32)
        if not len(allowed):
            return keys, scores
        sims = q @ self.index.reconstruct_batch(allowed).T
        n = min(k, len(allowed))
        top = np.argsort(-sims, axis=1, kind="stable")[:, :n]
        keys[:, :n] = allowed[top]
        scores[:, :n] = np.take_along_axis(sims, top, axis=1)
        return keys, scores

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Model-space query vectors (same model, truncation and normalization as the documents)."""
        return get_encoder(encoder_config(self.params, queries=True), probe=texts).encode(list(texts))

    def _to_index_space(self, x: np.ndarray) -> np.ndarray:
        if self.transform is not None:
            x = self.transform.apply(np.ascontiguousarray(x))
        if self.params["normalize"]:
            x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(x, dtype=np.float32)

    # persistence -------------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        import faiss

        folder.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(folder / "index.faiss"))
        np.save(folder / "keys.npy", self.keys)
        if self.transform is not None:
            faiss.write_VectorTransform(self.transform, str(folder / "transform.faiss"))
        (folder / "meta.json").write_text(json.dumps(self.meta, indent=1))

    @classmethod
    def load(cls, folder: Path) -> "VectorSet":
        import faiss

        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("format") != FORMAT:
            raise IndexStateError(f"{folder}: vector cache format {meta.get('format')} is not {FORMAT}")
        t = folder / "transform.faiss"
        return cls(faiss.read_index(str(folder / "index.faiss")), np.load(folder / "keys.npy"), meta["params"],
                   faiss.read_VectorTransform(str(t)) if t.exists() else None, meta)

    @classmethod
    def open(cls, searcher, field) -> "VectorSet":
        """The vector set of `field` at the searcher's commit: loaded from its cache, else built from the
        vectors stored in tantivy (updating an older cache when that is cheaper) and cached atomically."""
        root = Path(searcher.path) / "vectors" / field.name
        final = root / searcher.commit_id
        if (final / "meta.json").exists():
            try:
                vs = cls.load(final)
                if vs.params == field.params:
                    return vs
            except Exception:  # a damaged cache is rebuilt, never trusted
                pass
        keys, vectors = _stored_vectors(searcher, field)
        vs = _update_from_older(root, field.params, keys, vectors)
        vs, built = (vs, "incremental") if vs is not None else (cls.build(keys, vectors, field.params), "full")
        vs.meta.update(commit_id=searcher.commit_id, field=field.name, count=len(vs), built=built)
        tmp = root / f".tmp-{searcher.commit_id}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        vs.save(tmp)
        np.savez(tmp / "fingerprints.npz", keys=keys, fp=_fingerprint(vectors))
        shutil.rmtree(final, ignore_errors=True)
        try:
            os.replace(tmp, final)
        except OSError:  # another process put the same commit's cache in place first
            shutil.rmtree(tmp, ignore_errors=True)
        _prune(root)
        return vs


def _stored_vectors(searcher, field) -> tuple[np.ndarray, np.ndarray]:
    keys, blobs = searcher.stored_bytes(field.name)
    dim, width = field.params["dim"], field.params["dim"] * 4
    lengths = np.fromiter(map(len, blobs), dtype=np.int64, count=len(blobs))
    present = lengths == width
    odd = lengths[(lengths != width) & (lengths > 0)]
    if len(odd):
        raise IndexStateError(f"field {field.name!r} stores vectors of {odd[0] // 4} dims but its model "
                              f"{field.params['model']} gives {dim}; reindex the documents")
    data = b"".join(b for b, ok in zip(blobs, present) if ok)
    return np.asarray(keys, dtype=np.int64)[present], np.frombuffer(data, dtype="<f4").reshape(-1, dim).astype(np.float32)


def _fingerprint(vectors: np.ndarray) -> np.ndarray:
    """A 64-bit hash per row, to tell which documents changed since an older cache."""
    words = np.ascontiguousarray(vectors, dtype=np.float32).view(np.uint32).astype(np.uint64)
    mult = np.random.default_rng(7).integers(1, 2**63, size=words.shape[1], dtype=np.uint64) | np.uint64(1)
    with np.errstate(over="ignore"):
        return (words * mult).sum(axis=1, dtype=np.uint64)


def _update_from_older(root: Path, params: dict, keys: np.ndarray, vectors: np.ndarray) -> VectorSet | None:
    """Bring the newest older cache with the same params up to date, or None when a rebuild is better."""
    for folder in sorted((p for p in root.glob("[!.]*") if (p / "fingerprints.npz").exists()),
                         key=lambda p: p.stat().st_mtime, reverse=True)[:1]:
        try:
            old = VectorSet.load(folder)
            saved = np.load(folder / "fingerprints.npz")
        except Exception:
            return None
        if old.params != params:
            return None
        order = np.argsort(saved["keys"])
        old_keys, old_fp = saved["keys"][order], saved["fp"][order]
        pos = np.minimum(np.searchsorted(old_keys, keys), max(len(old_keys) - 1, 0))
        known = old_keys[pos] == keys if len(old_keys) else np.zeros(len(keys), bool)
        changed = ~known | (old_fp[pos] != _fingerprint(vectors)) if len(old_keys) else ~known
        gone = np.setdiff1d(old_keys, keys)
        stale = np.concatenate([gone, keys[changed & known]])
        if (len(stale) and not INDEX_TYPES[params["index"]].removable) or changed.sum() + len(gone) > len(keys) // 2:
            return None
        old.remove(stale)
        old.add(keys[changed], vectors[changed])
        return old
    return None


def _prune(root: Path) -> None:
    dirs = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in dirs[KEEP_CACHES:]:
        shutil.rmtree(old, ignore_errors=True)


def _fit_transform(spec: str, vectors: np.ndarray):
    """Whitening (all dims, unit variance) or PCA to N dims, fitted on the corpus vectors. A corpus with
    fewer documents than dimensions keeps at most (documents - 1) dims: the rest carry no variance."""
    import faiss

    d = vectors.shape[1]
    out, power = (d, -0.5) if spec == "whiten" else (int(spec[4:]), 0.0)
    t = faiss.PCAMatrix(d, max(1, min(out, len(vectors) - 1)), power, False)
    t.epsilon = 1e-6
    t.train(np.ascontiguousarray(vectors, dtype=np.float32))
    return t
