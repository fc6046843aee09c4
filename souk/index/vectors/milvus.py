"""Milvus as a vector backend (`index = "milvus"`): a vector field's vectors, and the fields filters read,
mirrored into one Milvus collection that follows the index's commits.

The index stays the source of truth (raw vectors are stored in tantivy as for FAISS); the collection is a
mirror, so it can always be rebuilt from the index (`rebuild`, `souk vectors rebuild --index DIR`).

- Params (`MilvusParams`, the backend's own keys in a vector field's params): `uri` (a local `.db` file served
  in-process by
  milvus-lite, or `http://host:19530` for a cluster; a token comes from `SOUK_MILVUS_TOKEN`, never the
  params), `collection`, `mirror` (fields copied for filtering; default: every stored keyword and number
  field but the id) and `milvus_index` (the collection's index type).
- Writes: the writer stages each written document's row and each deleted key (`MilvusMirror`) and, after
  the tantivy commit, deletes, upserts and stamps the collection with the commit id (property
  `souk.commit`, set to `pending:<id>` while it syncs).
- Searches (`MilvusVectorSet`) run only when the collection's stamp is the searcher's commit (a writer
  mid-sync is waited for, briefly); anything else is an `IndexStateError` saying what to run. The plan's
  filters (`Filters.items`) are pushed down as Milvus boolean expressions (`filter_expression`): keyword values
  compared in lower case
  (as the keyword index matches them), number comparisons and ranges, `!=` keeping documents without the
  field, as the keyword index does.

pymilvus (and milvus-lite for a local file) are imported only here, lazily: `pip install 'souk[milvus]'`.

Misuse to avoid: writing to the collection with other tools (its stamp would lie; rebuild instead), or
naming a collection that another index uses.
"""
from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from souk.analysis.normalize import normalize_keyword
from souk.errors import ConfigError, IndexStateError, QueryError
from souk.index.keys import doc_key
from souk.index.filters import Filters
from souk.index.vectors.backend import VECTOR_BACKENDS
from souk.index.vectors.encoding import encode_queries

EXTRA = "pip install 'souk[milvus]'"
TOKEN_ENV = "SOUK_MILVUS_TOKEN"
COMMIT = "souk.commit"
PENDING = "pending:"
WAIT_S = 5.0          # how long a search waits for a writer that is stamping the collection
BATCH = 1000          # rows per upsert / keys per delete
MAX_TOPK = 16_384     # Milvus's limit on k
MAX_VALUES = 4096     # Milvus's limit on an array's length
MAX_VARCHAR = 65_535
MILVUS_INDEXES = ("AUTOINDEX", "FLAT", "HNSW", "IVF_FLAT", "IVF_SQ8")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,200}$")

_CLIENTS: dict[str, Any] = {}
_LOADED: set[tuple[str, str]] = set()
_LOCK = threading.RLock()


# ---- the client ----------------------------------------------------------------------------
def _pymilvus():
    try:
        import pymilvus
    except ImportError:
        raise ConfigError(f"this index keeps its vectors in Milvus, which needs the milvus extra: {EXTRA}") from None
    return pymilvus


def is_local(uri: str) -> bool:
    """Whether `uri` names a local Milvus Lite file rather than a server."""
    return "://" not in uri


def client(uri: str):
    """One `MilvusClient` per uri per process (Milvus Lite serves a file to one process at a time)."""
    with _LOCK:
        if uri not in _CLIENTS:
            pm = _pymilvus()
            if is_local(uri):
                try:
                    import milvus_lite  # noqa: F401
                except ImportError:
                    raise ConfigError(
                        f"a local Milvus file needs milvus-lite, part of the milvus extra: {EXTRA}"
                    ) from None
            try:
                _CLIENTS[uri] = pm.MilvusClient(uri=uri, token=os.environ.get(TOKEN_ENV, ""))
            except Exception as e:  # unreachable server, locked or damaged file: never echo the uri (a path)
                raise IndexStateError(f"cannot open the Milvus collection store of this index ({type(e).__name__}); "
                                      "check that Milvus is running and reachable (or that no other process "
                                      "holds its Milvus Lite file)") from None
        return _CLIENTS[uri]


def _call(what: str, fn: Callable, *args, **kwargs):
    """Run a client call; Milvus failures become `IndexStateError` (its own message, which names no path)."""
    try:
        return fn(*args, **kwargs)
    except Exception as e:
        if isinstance(e, (IndexStateError, ConfigError, QueryError)):
            raise
        message = str(getattr(e, "message", "") or e)[:200]
        raise IndexStateError(f"Milvus could not {what}: {message}") from None


# ---- params and the mirrored fields --------------------------------------------------------
@dataclass
class MilvusParams:
    """Milvus's own keys in a vector field's params (types checked by `parse_options`, values by `check_params`)."""

    uri: str = ""
    collection: str = ""
    mirror: list[str] | None = None
    milvus_index: str = "AUTOINDEX"


def check_params(params: dict[str, Any], where: str) -> dict[str, Any]:
    """The backend's own params checked and completed (a local file's path pinned absolute)."""
    uri, coll, mirror = params["uri"], params["collection"], params["mirror"]
    if not isinstance(uri, str) or not uri.strip():
        raise ConfigError(f"{where}.uri: expected a Milvus uri: a local file ending in .db (Milvus Lite) or http://host:19530")
    if is_local(uri):
        if not uri.endswith(".db"):
            raise ConfigError(f"{where}.uri: a local Milvus Lite file must end in .db")
        params["uri"] = str(Path(uri).expanduser().absolute())
    else:
        scheme, _, rest = uri.partition("://")
        if scheme not in ("http", "https", "tcp", "grpc") or not rest or "@" in rest.split("/")[0]:
            raise ConfigError(f"{where}.uri: expected http(s)://host:port with no credentials in it "
                              f"(give a token in {TOKEN_ENV})")
    if not isinstance(coll, str) or not _NAME.match(coll):
        raise ConfigError(f"{where}.collection: expected a Milvus collection name (letters, digits, _; not starting "
                          "with a digit)")
    if mirror is not None and not (isinstance(mirror, list) and all(isinstance(m, str) for m in mirror)):
        raise ConfigError(f"{where}.mirror: expected a list of keyword or number field names")
    if params["milvus_index"] not in MILVUS_INDEXES:
        raise ConfigError(f"{where}.milvus_index: expected one of {', '.join(MILVUS_INDEXES)}")
    if params["transform"] != "none":
        raise ConfigError(f"{where}.transform: Milvus keeps the vectors as encoded; use \"none\" "
                          "with index = \"milvus\"")
    return params


def mirrored_fields(schema, params: dict[str, Any]) -> dict[str, str]:
    """souk field name -> Milvus field name, for the fields filters can read in Milvus."""
    if params["mirror"] is None:
        names = [f.name for f in schema.fields.values()
                 if f.kind in ("keyword", "number") and f.stored and f.name != schema.id_field]
    else:
        names = params["mirror"]
        for name in names:
            f = schema.fields.get(name)
            if f is None or f.kind not in ("keyword", "number") or not f.stored:
                raise ConfigError(f"vector params mirror: {name!r} is not a stored keyword or number field")
    return {name: f"f_{name}" for name in names}  # schema names are letters, digits and _ already


def row_of(key: int, vector: np.ndarray, values: dict[str, Any], schema, names: dict[str, str]) -> dict[str, Any]:
    """A collection row: key, unit vector and the mirrored values (keywords lower-cased, as filters match)."""
    row: dict[str, Any] = {"key": int(key), "vector": vector.tolist()}
    for name, mname in names.items():
        v = values.get(name)
        if v is None:
            row[mname] = None
        elif schema.fields[name].kind == "keyword":
            vals = [str(x).lower() for x in ([v] if isinstance(v, str) else v)]
            if len(vals) > MAX_VALUES:
                raise ConfigError(f"a document has {len(vals)} values in field {name}; Milvus arrays hold at most "
                                  f"{MAX_VALUES}: leave {name} out of the vector params' mirror")
            row[mname] = vals
        else:
            row[mname] = float(v)
    return row


def _unit(x: np.ndarray, normalize: bool) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12) if normalize else x


# ---- filters as Milvus expressions ---------------------------------------------------------
def _literal(text: str) -> str:
    """A Milvus string literal: double-quoted, with backslashes, quotes and control characters escaped."""
    out = []
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ord(ch) < 0x20:
            out.append({"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(ch, " "))
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _number(text: str) -> str:
    """A finite number in positional notation (Milvus parses no exponents)."""
    d = Decimal(repr(float(text)))
    return format(d, "f")


def filter_expression(filters: Sequence[Any], schema, names: dict[str, str]) -> str:
    """The Milvus boolean expression of souk filters (`souk.index.filters.Filter`), all of them and'ed."""
    parts = []
    for flt in filters:
        m = names.get(flt.field)
        if m is None:
            raise QueryError(f"filter on {flt.field}: that field is not mirrored to Milvus; add it to the vector "
                             "field's `mirror` param and run `souk vectors rebuild`")
        if schema.fields[flt.field].kind == "keyword":
            values = ", ".join(_literal(normalize_keyword(v).lower()) for v in flt.values)
            expr = f"array_contains_any({m}, [{values}])"
        elif flt.op in ("<", "<=", ">", ">="):
            expr = f"{m} {flt.op} {_number(flt.values[0])}"
        else:
            alts = []
            for v in flt.values:
                if ".." in v:
                    lo, hi = v.split("..", 1)
                    bounds = ([f"{m} >= {_number(lo)}"] if lo else []) + ([f"{m} <= {_number(hi)}"] if hi else [])
                    alts.append("(" + " and ".join(bounds) + ")")
                else:
                    alts.append(f"{m} == {_number(v)}")
            expr = " or ".join(alts)
        parts.append(f"({m} is null or not ({expr}))" if flt.op == "!=" else f"({expr})")
    return " and ".join(parts)


# ---- the collection ------------------------------------------------------------------------
def _create_collection(cl, params: dict[str, Any], schema, names: dict[str, str]) -> None:
    pm = _pymilvus()
    DataType = pm.DataType
    s = pm.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    s.add_field("key", DataType.INT64, is_primary=True)
    s.add_field("vector", DataType.FLOAT_VECTOR, dim=params["dim"])
    for name, mname in names.items():
        if schema.fields[name].kind == "keyword":
            s.add_field(mname, DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=MAX_VALUES,
                        max_length=MAX_VARCHAR, nullable=True)
        else:
            s.add_field(mname, DataType.DOUBLE, nullable=True)
    ip = cl.prepare_index_params()
    ip.add_index(field_name="vector", index_type=params["milvus_index"], metric_type="IP")
    _call("create the collection", cl.create_collection, params["collection"], schema=s, index_params=ip,
          consistency_level="Strong")


def _stamp(cl, collection: str, value: str) -> None:
    _call("stamp the collection", cl.alter_collection_properties, collection, properties={COMMIT: value})


def collection_commit(cl, collection: str) -> str | None:
    """The commit id the collection was last stamped with (`pending:<id>` mid-sync); None if it is missing."""
    if not _call("list collections", cl.has_collection, collection):
        return None
    props = _call("describe the collection", cl.describe_collection, collection).get("properties") or {}
    return props.get(COMMIT, "")


def _load(cl, uri: str, collection: str) -> None:
    with _LOCK:
        if (uri, collection) not in _LOADED:
            _call("load the collection", cl.load_collection, collection)
            _LOADED.add((uri, collection))


class MilvusMirror:
    """The writer's side: rows staged per write, keys per delete, sent after the tantivy commit."""

    def __init__(self, index, field, params: dict[str, Any]):
        self.field = field.name
        self.schema = index.schema
        self.params = params
        self.names = mirrored_fields(index.schema, params)
        self.client = client(params["uri"])
        self._rows: dict[int, dict[str, Any]] = {}
        self._gone: set[int] = set()

    def stage(self, batch: Sequence[dict[str, Any]], vectors: np.ndarray) -> None:
        """Rows for written documents (`batch`: extracted values; `vectors`: model-space, one row each)."""
        unit = _unit(vectors, self.params["normalize"])
        for values, vec in zip(batch, unit):
            key = doc_key(values[self.schema.id_field])
            self._rows[key] = row_of(key, vec, values, self.schema, self.names)
            self._gone.discard(key)

    def delete(self, keys: Sequence[int]) -> None:
        for key in keys:
            self._rows.pop(int(key), None)
            self._gone.add(int(key))

    def clear(self) -> None:
        self._rows.clear()
        self._gone.clear()

    def publish(self, commit_id: str) -> dict[str, int]:
        """Bring the collection to `commit_id`: stamp pending, delete, upsert, stamp."""
        cl, coll = self.client, self.params["collection"]
        if not _call("list collections", cl.has_collection, coll):
            _create_collection(cl, self.params, self.schema, self.names)
        _stamp(cl, coll, PENDING + commit_id)
        gone, rows = sorted(self._gone), list(self._rows.values())
        for i in range(0, len(gone), BATCH):
            _call("delete vectors", cl.delete, coll, ids=gone[i:i + BATCH])
        for i in range(0, len(rows), BATCH):
            _call("upsert vectors", cl.upsert, coll, rows[i:i + BATCH])
        _stamp(cl, coll, commit_id)
        self.clear()
        return {"upserted": len(rows), "deleted": len(gone)}


@VECTOR_BACKENDS.register("milvus")
class MilvusBackend:
    """Registers `index = "milvus"`: the vectors live in a Milvus collection, not in a per-commit cache.

    `remote = True` tells the cache to open a `MilvusVectorSet` instead of building an index here, and
    `mirror` gives the writer what to send at each commit."""

    remote = True
    Params = MilvusParams
    check_params = staticmethod(check_params)

    def __init__(self, dim: int, params: dict[str, Any]):
        raise IndexStateError("a Milvus vector field is not built in memory; open it with MilvusVectorSet")

    @staticmethod
    def mirror(index, field, params: dict[str, Any]) -> MilvusMirror:
        return MilvusMirror(index, field, params)

    @staticmethod
    def open_remote(searcher, field, params: dict[str, Any]) -> "MilvusVectorSet":
        return MilvusVectorSet(searcher, field, params)


class MilvusVectorSet:
    """The search side, with `VectorSet`'s interface (`search`, `encode_queries`, `params`, `len`); `search`
    pushes the plan's filters down as a Milvus expression (`pushes_filters`)."""

    pushes_filters = True

    def __init__(self, searcher, field, params: dict[str, Any]):
        self.searcher = searcher
        self.field = field.name
        self.params = params
        self.names = mirrored_fields(searcher.schema, params)
        self.client = client(params["uri"])
        self.collection = params["collection"]
        self.check_commit()
        _load(self.client, params["uri"], self.collection)

    def __len__(self) -> int:
        return int(self.searcher.num_docs)

    def memory_bytes(self) -> int:
        """Nothing on this node: the vectors live in Milvus."""
        return 0

    def check_commit(self) -> None:
        """Refuse to search a collection stamped with another commit than the searcher's (waits up to
        `WAIT_S` while a writer is stamping this commit)."""
        deadline = time.monotonic() + WAIT_S
        while True:
            stamp = collection_commit(self.client, self.collection)
            if stamp == self.searcher.commit_id:
                return
            if stamp is None:
                raise IndexStateError(f"the Milvus collection {self.collection} of this index is missing; "
                                      "run `souk vectors rebuild --index DIR`")
            if stamp != PENDING + self.searcher.commit_id or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        state = "being synced to another commit" if stamp.startswith(PENDING) else f"at commit {stamp or 'none'}"
        raise IndexStateError(f"the Milvus collection {self.collection} is {state}, this snapshot is commit "
                              f"{self.searcher.commit_id}: reopen the index after a writer's commit, or run "
                              "`souk vectors rebuild --index DIR` if they drifted")

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return encode_queries(self.params, list(texts))

    def search(self, query_vectors: np.ndarray, k: int,
               filters: Filters | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k keys and scores per query (-1 pads); the structured filters are evaluated inside Milvus
        (a key list expression when only the allowed keys are known)."""
        if filters is None:
            return self._search(query_vectors, k, "")
        if filters.items is not None:
            return self._search(query_vectors, k, filter_expression(filters.items, self.searcher.schema, self.names))
        allowed = filters.keys()
        if not len(allowed):
            return self._empty(len(np.atleast_2d(query_vectors)), k)
        return self._search(query_vectors, k, f"key in [{', '.join(str(int(x)) for x in allowed)}]")

    def _empty(self, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        return np.full((n, k), -1, np.int64), np.zeros((n, k), np.float32)

    def _search(self, query_vectors: np.ndarray, k: int, expr: str) -> tuple[np.ndarray, np.ndarray]:
        raw = np.atleast_2d(np.asarray(query_vectors, dtype=np.float32))
        k = max(0, min(k, len(self), MAX_TOPK))
        keys, scores = self._empty(len(raw), k)
        live = np.flatnonzero(np.abs(raw).sum(axis=1) > 0)
        if k == 0 or not len(live):
            return keys, scores
        self.check_commit()
        q = _unit(raw[live], self.params["normalize"])
        res = _call("search", self.client.search, self.collection, data=q.tolist(), limit=k, filter=expr,
                    output_fields=[], search_params={"metric_type": "IP"})
        for row, hits in zip(live, res):
            n = min(k, len(hits))
            keys[row, :n] = [h["key"] if "key" in h else h["id"] for h in hits[:n]]
            scores[row, :n] = [h["distance"] for h in hits[:n]]
        return keys, scores


# ---- rebuilding ----------------------------------------------------------------------------
def rebuild(index_path: str | Path, field: str | None = None, batch: int = BATCH,
            progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Drop and refill the Milvus collection of a vector field from the index's last commit (the writer
    lock is held meanwhile, so no commit slips in); returns what was sent."""
    from souk.index import Index
    from souk.index.vectors.cache import stored_vectors
    from souk.index.vectors.config import field_params

    index = Index.open(index_path)
    vf = _milvus_field(index, field)
    params = field_params(index, vf)
    names = mirrored_fields(index.schema, params)
    cl = client(params["uri"])
    coll = params["collection"]
    t0 = time.perf_counter()
    with index.writer():
        searcher = index.searcher()
        keys, vectors = stored_vectors(searcher, vf.name, params)
        if _call("list collections", cl.has_collection, coll):
            _call("drop the collection", cl.drop_collection, coll)
        with _LOCK:
            _LOADED.discard((params["uri"], coll))
        _create_collection(cl, params, index.schema, names)
        _stamp(cl, coll, PENDING + searcher.commit_id)
        ids = searcher.keys_to_ids(keys)
        unit = _unit(vectors, params["normalize"]) if len(vectors) else vectors
        for start in range(0, len(ids), batch):
            docs = searcher.docs(ids[start:start + batch])
            rows = [row_of(k, v, d or {}, index.schema, names)
                    for k, v, d in zip(keys[start:start + batch], unit[start:start + batch], docs)]
            _call("upsert vectors", cl.upsert, coll, rows)
            if progress:
                progress(len(rows))
        _stamp(cl, coll, searcher.commit_id)
    return {"field": vf.name, "collection": coll, "vectors": int(len(keys)), "commit": searcher.commit_id,
            "mirrored": list(names), "seconds": round(time.perf_counter() - t0, 2)}


def status(index_path: str | Path, field: str | None = None) -> dict[str, Any]:
    """Whether the Milvus collection of a vector field is at the index's last commit."""
    from souk.index import Index
    from souk.index.vectors.config import field_params

    index = Index.open(index_path)
    vf = _milvus_field(index, field)
    params = field_params(index, vf)
    cl = client(params["uri"])
    commit = index.searcher().commit_id
    stamp = collection_commit(cl, params["collection"])
    rows = None
    if stamp is not None:
        rows = int(_call("count rows", cl.query, params["collection"], filter="",
                         output_fields=["count(*)"])[0]["count(*)"])
    return {"field": vf.name, "collection": params["collection"], "index_commit": commit, "milvus_commit": stamp,
            "in_step": stamp == commit, "rows": rows, "mirrored": list(mirrored_fields(index.schema, params))}


def _milvus_field(index, field: str | None):
    from souk.index.vectors.config import field_params

    fields = [f for f in index.schema.vector_fields if field is None or f.name == field]
    fields = [f for f in fields if field_params(index, f)["index"] == "milvus"]
    if len(fields) != 1:
        raise ConfigError("name one vector field kept in Milvus (index = \"milvus\"); this index has "
                          f"{len(fields)} such field(s)")
    return fields[0]


def move(index_path: str | Path, backend: str, uri: str | None = None, collection: str | None = None,
         field: str | None = None, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Move a vector field's searchable vectors to another backend without re-encoding (the raw vectors
    stay in the index): to Milvus (`uri`, `collection`) and back to a local FAISS kind. One commit
    switches the manifest's params; a move to Milvus then fills the collection (`rebuild`)."""
    from types import SimpleNamespace

    from souk.index import Index
    from souk.index.vectors.config import core_params, field_params, validate_params

    index = Index.open(index_path)
    fields = [f for f in index.schema.vector_fields if field is None or f.name == field]
    if len(fields) != 1:
        raise ConfigError("name the vector field to move (vector fields: "
                          f"{', '.join(f.name for f in index.schema.vector_fields) or 'none'})")
    vf = fields[0]
    old = field_params(index, vf)
    params = core_params(old)
    params["index"] = backend
    if backend == "milvus":
        params.update(uri=uri or "", collection=collection or "")
    elif uri or collection:
        raise ConfigError(f"uri and collection apply to the milvus backend, not {backend}")
    params = validate_params(SimpleNamespace(name=vf.name, params=params))
    vectors = {**index.manifest.get("vectors", {}), vf.name: params}
    with index.writer() as writer:
        writer._mirrors = []  # the new collection is filled whole by `rebuild` below, not from this commit's writes
        writer.commit(vectors=vectors)
    out = {"field": vf.name, "from": old["index"], "to": backend}
    if backend == "milvus":
        out.update(rebuild(index_path, vf.name, progress=progress))
    return out
