"""Vector backends: where index-space vectors live and how the nearest ones are found.

A backend is one class with a verb per method (`VectorBackend`), registered by the name a vector field's
`index` param gives. `VectorSet` does everything around it (keys present, transform, normalization,
caching), so a newcomer writes only storage and search:

    @register_vector_backend("exact")
    class Exact:
        def __init__(self, dim, params): ...
        def add(self, keys, vectors): ...          # new keys only (replacing is remove + add)
        def remove(self, keys): ...                # keys known to be present
        def search(self, queries, k, allowed_keys): ...  # -> (keys, scores), shape (queries, k), -1 pads
        def save(self, folder): ...
        @classmethod
        def open(cls, folder, params): ...

FAISS (inner product) is the first backend, under the names `flat`, `hnsw`, `ivfpq` and `sq8`.

Misuse to avoid: registering a backend in one process and searching its caches in another that has not
registered it (the name is stored in the cache; an unknown name rebuilds, it never guesses).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

from souk.errors import ConfigError, IndexStateError

EXACT_BELOW = 4096  # filters allowing fewer docs are scored exactly on reconstructed vectors


@runtime_checkable
class VectorBackend(Protocol):
    """Stores unit index-space vectors by int64 key and finds the top-k by inner product.

    Invariants the caller keeps: `add` gets keys not present, `remove` gets keys present, `allowed_keys`
    is None or a sorted array of present keys, and 0 < k <= number of vectors held."""

    def __init__(self, dim: int, params: dict[str, Any]) -> None: ...

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None: ...

    def remove(self, keys: np.ndarray) -> None: ...

    def search(self, queries: np.ndarray, k: int, allowed_keys: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]: ...

    def save(self, folder: Path) -> None: ...

    @classmethod
    def open(cls, folder: Path, params: dict[str, Any]) -> "VectorBackend": ...


_BACKENDS: dict[str, type] = {}
_PARAMS: dict[str, dict[str, Any]] = {}
# backends in their own modules, registered when first named (their client libraries load only when used)
_OPTIONAL = {"milvus": "souk.index.vectors.milvus"}


def register_vector_backend(name: str, params: dict[str, Any] | None = None) -> Callable[[type], type]:
    """Class decorator: make the backend class available as `index = "<name>"` in vector field params.

    `params`: the backend's own keys in a vector field's params, with their defaults (checked by the class's
    optional `check_params(params, where) -> params` when an index is created)."""
    def add(cls: type) -> type:
        _BACKENDS[name] = cls
        _PARAMS[name] = dict(params or {})
        return cls

    return add


def backend_params(name: str) -> dict[str, Any]:
    """The extra params (with defaults) that backend `name` declared; {} for unknown names."""
    _load_optional(name)
    return dict(_PARAMS.get(name, {}))


def _load_optional(name: Any) -> None:
    if isinstance(name, str) and name in _OPTIONAL and name not in _BACKENDS:
        import importlib

        importlib.import_module(_OPTIONAL[name])


def vector_backend_names() -> list[str]:
    return list(dict.fromkeys([*_BACKENDS, *_OPTIONAL]))


def vector_backend(name: str) -> type[VectorBackend]:
    """The backend class registered as `name`; `ConfigError` lists the known ones."""
    _load_optional(name)
    if name not in _BACKENDS:
        raise ConfigError(f"unknown vector index {name!r}; known: {', '.join(vector_backend_names())}")
    return _BACKENDS[name]


# ---- FAISS -----------------------------------------------------------------------------------
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
    IndexType("hnsw", _hnsw, lambda faiss, p, sel: faiss.SearchParametersHNSW(sel=sel, efSearch=p["ef_search"]),
              removable=False),
    IndexType("ivfpq", _ivfpq, lambda faiss, p, sel: faiss.SearchParametersIVF(sel=sel, nprobe=p["nprobe"]),
              native_ids=True),
    IndexType("sq8", _sq8, lambda faiss, p, sel: faiss.SearchParameters(sel=sel)),
)}


class FaissBackend:
    """A FAISS index over document keys; the kind (`params["index"]`) is one of `INDEX_TYPES`.

    The index is built (and trained, for IVF-PQ and SQ8) on the first vectors added, so build a set
    from the whole corpus at once rather than growing it from a handful."""

    def __init__(self, dim: int, params: dict[str, Any], index=None):
        self.dim = dim
        self.params = params
        self.kind = INDEX_TYPES[params["index"]]
        self.index = index

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        import faiss

        if not len(keys):
            return
        if self.index is None:
            index = self.kind.build(self.dim, len(vectors))
            if not index.is_trained:
                index.train(vectors)
            if self.kind.native_ids:
                # reconstruct and remove by key (mypy does not see DirectMap in faiss's SWIG-generated module)
                index.set_direct_map_type(faiss.DirectMap.Hashtable)  # type: ignore[attr-defined]
            self.index = index if self.kind.native_ids else faiss.IndexIDMap2(index)
        self.index.add_with_ids(vectors, keys)

    def remove(self, keys: np.ndarray) -> None:
        import faiss

        if not len(keys):
            return
        if not self.kind.removable:
            raise IndexStateError(f"a {self.kind.name} index cannot delete vectors; rebuild it")
        sel = faiss.IDSelectorArray(keys) if self.kind.native_ids else faiss.IDSelectorBatch(keys)
        self.index.remove_ids(sel)

    def search(self, queries: np.ndarray, k: int, allowed_keys: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        if allowed_keys is None:
            scores, keys = self.index.search(queries, k, params=self.kind.params(faiss, self.params, None))
            return keys, scores
        if len(allowed_keys) <= EXACT_BELOW:
            return self._exact(queries, k, allowed_keys)
        sel = faiss.IDSelectorBatch(allowed_keys)
        scores, keys = self.index.search(queries, k, params=self.kind.params(faiss, self.params, sel))
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

    def save(self, folder: Path) -> None:
        import faiss

        if self.index is not None:
            faiss.write_index(self.index, str(folder / "index.faiss"))

    @classmethod
    def open(cls, folder: Path, params: dict[str, Any]) -> "FaissBackend":
        import faiss

        file = folder / "index.faiss"
        index = faiss.read_index(str(file)) if file.exists() else None
        return cls(index.d if index is not None else params["dim"], params, index)

    def __len__(self) -> int:
        return 0 if self.index is None else int(self.index.ntotal)

    def memory_bytes(self) -> int:
        """Size of the serialized index (what it holds in memory, near enough)."""
        import faiss

        return 0 if self.index is None else int(faiss.serialize_index(self.index).nbytes)


for _name in INDEX_TYPES:
    register_vector_backend(_name)(FaissBackend)
