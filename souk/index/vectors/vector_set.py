"""The vector set of one field at one commit: a backend over document keys, plus the fitted transform.

Misuse to avoid: transforming or normalizing vectors before handing them over; `VectorSet` takes
model-space vectors and maps them to index space itself, for documents and queries alike.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from souk.errors import IndexStateError
from souk.index.filters import Filters
from souk.index.vectors.backend import VECTOR_BACKENDS
from souk.index.vectors.encoding import encode_queries

FORMAT = 2  # 2: checksums, commit stamp and counts are stored with each cache and checked before use
META = "meta.json"


class VectorSet:
    """Vectors in, (keys, scores) out.

    Invariant: every key appears at most once (`keys`: sorted, unique, the keys present); `search` takes
    model-space vectors and applies the transform (and re-normalization) itself; an all-zero query row
    (a blank query) finds nothing."""

    def __init__(self, backend, keys: np.ndarray, params: dict[str, Any], transform=None,
                 meta: dict[str, Any] | None = None):
        self.backend = backend
        self.keys = np.asarray(keys, dtype=np.int64)
        self.params = params
        self.transform = transform
        self.meta = meta or {"format": FORMAT, "params": params}

    # building ----------------------------------------------------------------------------------
    @classmethod
    def build(cls, keys: np.ndarray, vectors: np.ndarray, params: dict[str, Any], transform=None) -> "VectorSet":
        """Index `vectors` under `keys`; fits the configured transform on them unless one is given."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        keys = np.asarray(keys, dtype=np.int64)
        if len(np.unique(keys)) != len(keys):
            raise IndexStateError("duplicate keys: each document has one vector")
        if transform is None and params["transform"] != "none":
            transform = _fit_transform(params["transform"], vectors)
        dim = transform.d_out if transform is not None else params["dim"]
        vs = cls(VECTOR_BACKENDS.get(params["index"])(dim, params), np.zeros(0, np.int64), params, transform)
        vs._add(keys, vs._to_index_space(vectors))
        return vs

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Add or replace vectors by key."""
        keys = np.asarray(keys, dtype=np.int64)
        self.remove(keys)
        self._add(keys, self._to_index_space(np.asarray(vectors, dtype=np.float32)))

    def _add(self, keys: np.ndarray, x: np.ndarray) -> None:
        if len(keys):
            self.backend.add(keys, x)
            self.keys = np.union1d(self.keys, keys)

    def remove(self, keys: np.ndarray) -> int:
        """Delete vectors by key (absent keys are ignored); returns how many were removed."""
        keys = np.intersect1d(np.asarray(keys, dtype=np.int64), self.keys)
        if len(keys):
            self.backend.remove(keys)
            self.keys = np.setdiff1d(self.keys, keys)
        return len(keys)

    def __len__(self) -> int:
        return len(self.keys)

    def memory_bytes(self) -> int:
        """Size of the backend's index in memory, near enough (backends without `memory_bytes`: 0)."""
        return int(getattr(self.backend, "memory_bytes", lambda: 0)())

    # searching ---------------------------------------------------------------------------------
    def search(self, query_vectors: np.ndarray, k: int,
               filters: Filters | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k keys and scores per query, shape (queries, k); -1 keys pad short result lists.

        `filters` restricts results (`Filters.of_keys(keys)` for a plain key set); unknown keys are ignored."""
        raw = np.atleast_2d(np.asarray(query_vectors, dtype=np.float32))
        k = max(0, min(k, len(self)))
        keys = np.full((len(raw), k), -1, np.int64)
        scores = np.zeros((len(raw), k), np.float32)
        live = np.flatnonzero(np.abs(raw).sum(axis=1) > 0)  # a zero row is a blank query: no hits
        if k == 0 or not len(live):
            return keys, scores
        within = None if filters is None else filters.within(self.keys)
        found, sims = self.backend.search(self._to_index_space(raw[live]), k, within)
        keys[live], scores[live] = found, sims
        return keys, scores

    def search_index_space(self, vectors: np.ndarray, k: int,
                           filters: Filters | None = None) -> tuple[np.ndarray, np.ndarray]:
        """`search` for vectors already in index space (e.g. a query moved toward documents' `vectors`)."""
        x = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if self.params["normalize"]:
            x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        k = max(0, min(k, len(self)))
        if k == 0 or not len(x):
            return np.full((len(x), k), -1, np.int64), np.zeros((len(x), k), np.float32)
        within = None if filters is None else filters.within(self.keys)
        return self.backend.search(np.ascontiguousarray(x, dtype=np.float32), k, within)

    def vectors(self, keys: np.ndarray) -> np.ndarray | None:
        """Index-space vectors of `keys` (all present), or None when the backend cannot give them back."""
        reconstruct = getattr(self.backend, "reconstruct", None)
        return None if reconstruct is None else np.asarray(reconstruct(np.asarray(keys, dtype=np.int64)), np.float32)

    def to_index_space(self, x: np.ndarray) -> np.ndarray:
        """Model-space vectors (from `encode_queries`) as the backend searches them."""
        return self._to_index_space(np.atleast_2d(np.asarray(x, dtype=np.float32)))

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Model-space query vectors (same model, truncation and normalization as the documents)."""
        return encode_queries(self.params, list(texts))

    def _to_index_space(self, x: np.ndarray) -> np.ndarray:
        if self.transform is not None:
            x = self.transform.apply(np.ascontiguousarray(x))
        if self.params["normalize"]:
            x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(x, dtype=np.float32)

    # persistence -------------------------------------------------------------------------------
    def save(self, folder: Path, params: dict[str, Any] | None = None) -> None:
        """Write the set into `folder` (which may already hold companion files); `meta.json` comes last and
        records a checksum of every file in the folder, so `load` can tell a damaged cache. `params`: what
        `meta.json` records as the set's params (default: its own; the index's cache records them pinned, see
        `souk.index.vectors.config.pin_model`)."""
        import faiss

        folder.mkdir(parents=True, exist_ok=True)
        self.backend.save(folder)
        np.save(folder / "keys.npy", self.keys)
        if self.transform is not None:
            faiss.write_VectorTransform(self.transform, str(folder / "transform.faiss"))
        files = sorted(f.name for f in folder.iterdir() if f.name != META)
        self.meta.update(format=FORMAT, params=self.params if params is None else params, count=len(self.keys),
                         checksums={f: _checksum(folder / f) for f in files})
        (folder / META).write_text(json.dumps(self.meta, indent=1))

    @classmethod
    def load(cls, folder: Path) -> "VectorSet":
        """Read a set saved by `save`; `IndexStateError` when any file is missing, altered or inconsistent."""
        import faiss

        try:
            meta = json.loads((folder / META).read_text())
        except (OSError, ValueError) as e:
            raise IndexStateError(f"{folder}: unreadable {META}: {e}") from e
        if meta.get("format") != FORMAT:
            raise IndexStateError(f"{folder}: vector cache format {meta.get('format')} is not {FORMAT}")
        for name, digest in meta.get("checksums", {}).items():
            if not (folder / name).is_file() or _checksum(folder / name) != digest:
                raise IndexStateError(f"{folder}: {name} is missing or does not match its checksum")
        params = meta["params"]
        keys = np.load(folder / "keys.npy")
        if len(keys) != meta.get("count"):
            raise IndexStateError(f"{folder}: {len(keys)} keys, but {meta.get('count')} recorded")
        backend = VECTOR_BACKENDS.get(params["index"]).open(folder, params)
        held = len(backend) if hasattr(backend, "__len__") else len(keys)
        if held != len(keys):
            raise IndexStateError(f"{folder}: the index holds {held} vectors for {len(keys)} keys")
        t = folder / "transform.faiss"
        return cls(backend, keys, params, faiss.read_VectorTransform(str(t)) if t.exists() else None, meta)

    @classmethod
    def open(cls, searcher, field) -> "VectorSet":
        """The vector set of `field` at the searcher's commit (see `souk.index.vectors.cache`)."""
        from souk.index.vectors.cache import open_vector_set

        return open_vector_set(searcher, field)


def _checksum(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _fit_transform(spec: str, vectors: np.ndarray):
    """Whitening (all dims, unit variance) or PCA to N dims, fitted on the corpus vectors. Dims without
    variance are dropped: a corpus with fewer documents than dimensions keeps at most (documents - 1), and
    whitening keeps only dims whose variance is above 1e-6 of the largest (scaling noise up gives NaNs)."""
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    d = x.shape[1]
    out, power = (d, -0.5) if spec == "whiten" else (int(spec[4:]), 0.0)
    out = max(1, min(out, len(x) - 1))
    while True:
        t = faiss.PCAMatrix(d, out, power, False)
        t.epsilon = 1e-6
        t.train(x)
        if power == 0.0:
            return t
        ev = faiss.vector_to_array(t.eigenvalues)[:out]
        keep = max(1, int((ev > 1e-6 * ev[0]).sum())) if len(ev) and ev[0] > 0 else 1
        if keep >= out:
            return t
        out = keep
