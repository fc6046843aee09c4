"""Vector backends: where index-space vectors live and how the nearest ones are found.

A backend is one class with a verb per method (`VectorBackend`), registered in `VECTOR_BACKENDS` by the
name a vector field's `index` param gives. `VectorSet` does everything around it (keys present, transform,
normalization, caching), so a newcomer writes only storage and search:

    @VECTOR_BACKENDS.register("exact")
    class Exact:
        Params = ExactParams                       # optional: a dataclass of the backend's own field params
        def __init__(self, dim, params): ...
        def add(self, keys, vectors): ...          # new keys only (replacing is remove + add)
        def remove(self, keys): ...                # keys known to be present
        def search(self, queries, k, filters): ...  # -> (keys, scores), shape (queries, k), -1 pads
        def save(self, folder): ...
        @classmethod
        def open(cls, folder, params): ...

`filters` is None or a `Filters`: `filters.items` are the plan's structured filters (an engine that
evaluates filters itself pushes them down), `filters.keys()` the allowed keys this set holds (computed
on first use). The backend's `Params` keys (with their defaults) join the vector field's params, checked
by `parse_options` when an index is created, then by the class's optional `check_params(params, where)`.

FAISS (inner product) is the first backend, under the names `flat`, `hnsw`, `ivfpq` and `sq8`. A `flat` set of
`COARSE_FROM` vectors or more also keeps an 8-bit copy (`CoarseScan`): a search scans it for a few times `k`
candidates, then scores those exactly on the fp32 vectors, so results are the flat scan's while reading a quarter
of the bytes.

Misuse to avoid: registering a backend in one process and searching its caches in another that has not
registered it (the name is stored in the cache; an unknown name rebuilds, it never guesses).
"""
from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

from souk.errors import IndexStateError
from souk.index.filters import Filters
from souk.plugins import Registry, option_check

EXACT_BELOW = 4096  # filters allowing fewer docs are scored exactly on reconstructed vectors


@runtime_checkable
class VectorBackend(Protocol):
    """Stores unit index-space vectors by int64 key and finds the top-k by inner product.

    Invariants the caller keeps: `add` gets keys not present, `remove` gets keys present, `filters` is
    None or a `Filters` whose `keys()` are sorted present keys, and 0 < k <= number of vectors held."""

    def __init__(self, dim: int, params: dict[str, Any]) -> None: ...

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None: ...

    def remove(self, keys: np.ndarray) -> None: ...

    def search(self, queries: np.ndarray, k: int, filters: Filters | None) -> tuple[np.ndarray, np.ndarray]: ...

    def save(self, folder: Path) -> None: ...

    @classmethod
    def open(cls, folder: Path, params: dict[str, Any]) -> "VectorBackend": ...


# backends in their own modules are optional: imported when first named (their client libraries load only when used)
VECTOR_BACKENDS: Registry[Any] = Registry("vector_backend", optional={"milvus": "souk.index.vectors.milvus"})


def backend_param_names(name: Any) -> set[str]:
    """The keys backend `name` adds to a vector field's params (its `Params` dataclass); none for unknown names."""
    from dataclasses import fields

    if not isinstance(name, str) or name not in VECTOR_BACKENDS:
        return set()
    own = getattr(VECTOR_BACKENDS.get(name), "Params", None)
    return {f.name for f in fields(own)} if own is not None else set()


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


@dataclass
class FaissParams:
    """FAISS's own vector field params: `ef_search` (HNSW) and `nprobe` (IVF-PQ), read at search time."""

    ef_search: int = field(default=64, metadata=option_check(lambda v: 1 <= v <= 100_000, "an integer in 1..100000"))
    nprobe: int = field(default=16, metadata=option_check(lambda v: 1 <= v <= 100_000, "an integer in 1..100000"))


SPLIT_FROM = 4  # queries in one search from which FAISS's OpenMP threads share the work
# A flat set this large also keeps an 8-bit copy to scan first (`CoarseScan`). Homedepot, 54,667 x 384, one query
# with caches evicted as in a search, 1 thread: flat 5.9 ms, 8-bit scan + exact scores of the top 400 4.1 ms, the
# same top 100 (overlap 0.9999 over 200 sampled queries; the 0.0001 a tie at rank 100).
COARSE_FROM = 20_000
COARSE_FILE = "coarse.faiss"
# A lone query's scan of the copy runs in parts, one per usable core (at most `SCAN_PARTS`), each a slice of
# `SHARD_MIN` vectors or more, on a thread pool (no OpenMP team to spin): homedepot at load 2, 5.0-5.5 -> 3.4-3.6 ms.
SCAN_PARTS = 4
SHARD_MIN = 10_000
_POOL: list[Any] = []
_POOL_LOCK = threading.Lock()


def _scan_pool(parts: int) -> Any:
    """The shared pool the parts of lone queries' scans run on (its threads keep FAISS's OpenMP at 1 thread)."""
    from concurrent.futures import ThreadPoolExecutor

    import faiss

    with _POOL_LOCK:  # a forked child has the pool object but not its threads: it makes its own
        if not _POOL or _POOL[1] != os.getpid() or _POOL[0]._max_workers < parts:
            _POOL[:] = [ThreadPoolExecutor(parts, thread_name_prefix="souk-scan",
                                           initializer=lambda: faiss.omp_set_num_threads(1)), os.getpid()]
        return _POOL[0]


def scan_parts() -> int:
    """Parts a lone query's scan is cut into: the cores this process may use, at most `SCAN_PARTS`."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(SCAN_PARTS, cores))


class CoarseScan:
    """Candidates from an 8-bit scalar-quantized copy of a flat set's vectors (FAISS `IndexScalarQuantizer`
    QT_8bit under `IndexIDMap2`, the same keys), scored again exactly by the caller. `depth(k)`: how many
    candidates a top-`k` search reads: enough that quantization error (about 1/255 of each dimension's range)
    never pushes one of the true top `k` out."""

    def __init__(self, index: Any):
        self.index = index
        self._parts: list[Any] | None = None  # the copy cut into slices by position, made on first use
        self._lock = threading.Lock()

    @staticmethod
    def depth(k: int, n: int) -> int:
        return min(n, max(4 * k, 256))

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        self.index.add_with_ids(vectors, keys)
        self._parts = None

    def remove(self, keys: np.ndarray) -> None:
        import faiss

        self.index.remove_ids(faiss.IDSelectorBatch(keys))
        self._parts = None

    @classmethod
    def build(cls, dim: int, keys: np.ndarray, vectors: np.ndarray) -> "CoarseScan":
        import faiss

        sq = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
        sq.train(vectors)
        index = faiss.IndexIDMap2(sq)
        index.add_with_ids(vectors, keys)
        return cls(index)

    @classmethod
    def read(cls, file: Path, flat: Any) -> "CoarseScan":
        """The copy saved beside `flat` (an untrusted file: its kind, metric, dimension and keys must be
        `flat`'s, else `IndexStateError`)."""
        import faiss

        index = faiss.read_index(str(file))
        ok = False
        if isinstance(index, faiss.IndexIDMap2) and isinstance(flat, faiss.IndexIDMap2):
            inner = faiss.downcast_index(index.index)
            ok = (isinstance(inner, faiss.IndexScalarQuantizer) and inner.metric_type == faiss.METRIC_INNER_PRODUCT
                  and inner.sq.qtype == faiss.ScalarQuantizer.QT_8bit and index.d == flat.d
                  and index.ntotal == flat.ntotal and np.array_equal(np.sort(faiss.vector_to_array(index.id_map)),
                                                                     np.sort(faiss.vector_to_array(flat.id_map))))
        if not ok:
            raise IndexStateError(f"{file.name} is not the 8-bit copy of this vector set; rebuild the cache")
        return cls(index)

    def candidates(self, queries: np.ndarray, k: int, params: Any, split: bool = False) -> np.ndarray:
        """(queries, depth) candidate keys, -1 where fewer are allowed; `split`: scan the copy's slices side by side
        (the same candidates: each slice's best `depth` by 8-bit score, merged by that score)."""
        depth = self.depth(k, int(self.index.ntotal))
        parts = self._slices() if split else None
        if not parts:
            return self.index.search(queries, depth, params=params)[1]
        found = list(_scan_pool(len(parts)).map(lambda part: part.search(queries, depth, params=params), parts))
        keys = np.concatenate([i for _, i in found], axis=1)
        scores = np.where(keys >= 0, np.concatenate([d for d, _ in found], axis=1), -np.inf)
        return np.take_along_axis(keys, np.argsort(-scores, axis=1, kind="stable")[:, :depth], axis=1)

    def _slices(self) -> list[Any] | None:
        """The copy cut by position into `scan_parts()` indexes sharing its quantizer (None: too small to cut)."""
        import faiss

        n = scan_parts()
        if n < 2 or self.index.ntotal < 2 * SHARD_MIN:
            return None
        n = min(n, int(self.index.ntotal) // SHARD_MIN)
        with self._lock:
            if self._parts is None or len(self._parts) != n:
                sq: Any = faiss.downcast_index(self.index.index)
                keys = faiss.vector_to_array(self.index.id_map)
                codes = faiss.vector_to_array(sq.codes).reshape(int(sq.ntotal), int(sq.code_size))
                parts = []
                for rows in np.array_split(np.arange(len(keys)), n):
                    part = faiss.IndexScalarQuantizer(sq.d, sq.sq.qtype, faiss.METRIC_INNER_PRODUCT)
                    part.sq.trained = sq.sq.trained
                    part.is_trained = True
                    index = faiss.IndexIDMap2(part)
                    index.add_sa_codes(np.ascontiguousarray(codes[rows]), np.ascontiguousarray(keys[rows]))
                    parts.append(index)
                self._parts = parts
            return self._parts


def rescore(queries: np.ndarray, candidates: np.ndarray, k: int,
            vectors: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The top `k` of each query's candidate keys by exact inner product with `vectors(keys)`; -1 pads."""
    keys = np.full((len(queries), k), -1, np.int64)
    scores = np.zeros((len(queries), k), np.float32)
    for i, (q, row) in enumerate(zip(queries, candidates)):
        row = row[row >= 0]
        if not len(row):
            continue
        sims = vectors(row) @ q
        top = np.argsort(-sims, kind="stable")[:k]
        keys[i, :len(top)], scores[i, :len(top)] = row[top], sims[top]
    return keys, scores


class FaissBackend:
    """A FAISS index over document keys; the kind (`params["index"]`) is one of `INDEX_TYPES`.

    The index is built (and trained, for IVF-PQ and SQ8) on the first vectors added, so build a set
    from the whole corpus at once rather than growing it from a handful."""

    Params = FaissParams

    def __init__(self, dim: int, params: dict[str, Any], index=None, coarse: CoarseScan | None = None):
        self.dim = dim
        self.params = params
        self.kind = INDEX_TYPES[params["index"]]
        self.index = index
        self.coarse = coarse

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
        if self.coarse is not None:
            self.coarse.add(keys, vectors)
        elif self.kind.name == "flat" and self.index.ntotal >= COARSE_FROM:
            self.coarse = CoarseScan.build(self.dim, *self._everything())

    def _everything(self) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        keys = faiss.vector_to_array(self.index.id_map)
        return keys, self.index.reconstruct_batch(keys)

    def remove(self, keys: np.ndarray) -> None:
        import faiss

        if not len(keys):
            return
        if not self.kind.removable:
            raise IndexStateError(f"a {self.kind.name} index cannot delete vectors; rebuild it")
        sel = faiss.IDSelectorArray(keys) if self.kind.native_ids else faiss.IDSelectorBatch(keys)
        self.index.remove_ids(sel)
        if self.coarse is not None:
            self.coarse.remove(keys)

    def search(self, queries: np.ndarray, k: int, filters: Filters | None) -> tuple[np.ndarray, np.ndarray]:
        """Keys and scores of the `k` nearest per query. A search of fewer than `SPLIT_FROM` queries runs on
        this thread alone: FAISS's OpenMP team for one query's scan spins against other processes' work (flat,
        54,667 x 384 at load 4 on 2 cores: 47 ms median with 2 threads, 11 ms with 1)."""
        import faiss

        if len(queries) >= SPLIT_FROM:
            return self._search(faiss, queries, k, filters)
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)  # OpenMP's thread count is this thread's own setting: others keep theirs
        try:
            return self._search(faiss, queries, k, filters, split=True)
        finally:
            faiss.omp_set_num_threads(threads)

    def _search(self, faiss: Any, queries: np.ndarray, k: int,
                filters: Filters | None, split: bool = False) -> tuple[np.ndarray, np.ndarray]:
        sel = None
        if filters is not None:
            allowed_keys = filters.keys()
            if len(allowed_keys) <= EXACT_BELOW:
                return self._exact(queries, k, allowed_keys)
            sel = faiss.IDSelectorBatch(allowed_keys)
        params = self.kind.params(faiss, self.params, sel)
        if self.coarse is not None:
            candidates = self.coarse.candidates(queries, k, params, split)
            return rescore(queries, candidates, k, self.index.reconstruct_batch)
        scores, keys = self.index.search(queries, k, params=params)
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

    def reconstruct(self, keys: np.ndarray) -> np.ndarray:
        """The stored (index-space) vectors of `keys`, all present (approximate for compressed kinds)."""
        if not len(keys):
            return np.zeros((0, self.dim), np.float32)
        return self.index.reconstruct_batch(np.asarray(keys, dtype=np.int64))

    def save(self, folder: Path) -> None:
        import faiss

        if self.index is not None:
            faiss.write_index(self.index, str(folder / "index.faiss"))
        if self.coarse is not None:
            faiss.write_index(self.coarse.index, str(folder / COARSE_FILE))

    @classmethod
    def open(cls, folder: Path, params: dict[str, Any]) -> "FaissBackend":
        """The backend saved in `folder`; a large flat set saved without its 8-bit copy gets one built here."""
        import faiss

        file = folder / "index.faiss"
        index = faiss.read_index(str(file)) if file.exists() else None
        backend = cls(index.d if index is not None else params["dim"], params, index)
        if index is None or backend.kind.name != "flat":
            return backend
        if (folder / COARSE_FILE).is_file():
            backend.coarse = CoarseScan.read(folder / COARSE_FILE, index)
        elif index.ntotal >= COARSE_FROM:
            backend.coarse = CoarseScan.build(backend.dim, *backend._everything())
        return backend

    def __len__(self) -> int:
        return 0 if self.index is None else int(self.index.ntotal)

    def memory_bytes(self) -> int:
        """Size of the serialized index (what it holds in memory, near enough)."""
        import faiss

        coarse = 0 if self.coarse is None else int(faiss.serialize_index(self.coarse.index).nbytes)
        return coarse + (0 if self.index is None else int(faiss.serialize_index(self.index).nbytes))


for _name in INDEX_TYPES:
    VECTOR_BACKENDS.register(_name, FaissBackend)
