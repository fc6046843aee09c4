"""The one write path: how records get into an index, for the CLI, the HTTP server and the library.

`open_or_create(catalog, dir, ...)` opens an index or creates it (given, BEIR or inferred schema);
`index_records(opened, ...)` writes a catalog in chunks, one commit each, and removes an index this
run created when it fails before its first commit; `write_batch(index, records, delete=...)` upserts
and deletes in one commit inside the index's write turn (what `Engine.write` and `souk delete` do).
The `on_error` policy (`fail`: a bad record rejects its batch; `skip`: the rest is written) is checked
here once. `open_index` opens an index for the commands that read or administer one.
Misuse: driving `Index.writer()` yourself from a command or a route; go through these functions.
"""
from __future__ import annotations

import contextlib
import itertools
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from souk.catalogs import Record, detect_format, read_catalog
from souk.errors import ConfigError, DocumentError
from souk.index import Index
from souk.index.writer import WriteReport, write_turn
from souk.schema import Inference, Schema, beir_schema, complete, infer, read_schema_file

INFER_SAMPLE = 1000  # records read to infer a schema
ON_ERROR = ("fail", "skip")


def check_on_error(value: Any, where: str = "on_error") -> str:
    """`value` when it is an `on_error` policy, else a ConfigError naming `where`."""
    if value not in ON_ERROR:
        raise ConfigError(f"{where} must be 'fail' or 'skip', not {value!r}")
    return value


def check_commit_every(value: Any, where: str = "commit_every") -> int:
    """`value` when it is 0 (one commit at the end) or a number of records, else a ConfigError naming `where`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{where} must be 0 (one commit at the end) or a number of records, not {value!r}")
    return value


def open_index(path: str | Path) -> Index:
    """An existing index, for commands that read or administer it (stats, spelling, suggestions...)."""
    return Index.open(path)


@dataclass
class Opened:
    """An index ready for a catalog: its records, notes on guessed schema parts, and whether this run made it."""

    index: Index
    records: Iterator[Record]
    notes: list[str] = field(default_factory=list)
    created: bool = False


def open_or_create(data: Path, index_dir: Path, schema_file: Path | None, vectors: bool,
                   columns: list[str] | None = None, vector_params: dict | None = None) -> Opened:
    """Open the index at `index_dir`, or create it with the given, BEIR or inferred schema.

    A schema file without [fields] is completed from the catalog; CSV column names come from
    `columns`, the schema file's `[catalog] columns` or, for an existing index, its schema.
    Misuse: creating the index yourself first (its schema then never comes from the catalog)."""
    raw = read_schema_file(schema_file) if schema_file else None
    if Index.exists(index_dir):
        index = Index.open(index_dir)
        if raw is not None and "fields" in raw:
            if Schema.from_dict(raw, origin=str(schema_file)).to_dict()["fields"] != index.schema.to_dict()["fields"]:
                raise ConfigError(f"{index_dir} exists with another schema; index into a new directory to change it")
        elif raw is not None and raw.get("id", index.schema.id_field) != index.schema.id_field:
            raise ConfigError(f"{index_dir} exists with id field {index.schema.id_field!r}, not {raw.get('id')!r}")
        if vectors and not index.schema.vector_fields:
            raise ConfigError(f"{index_dir} exists without a vector field; --vectors only applies when creating an "
                              "index: index into a new directory")
        cols = columns or _file_columns(raw, schema_file) or index.schema.catalog.get("columns")
        return Opened(index, read_catalog(data, columns=cols))
    cols = columns or _file_columns(raw, schema_file)
    records = read_catalog(data, columns=cols)
    if raw is not None and "fields" in raw:
        inference = Inference(Schema.from_dict(raw, origin=str(schema_file)))
    elif raw is None and detect_format(data) == "beir":
        inference = Inference(beir_schema())
    else:
        head = list(itertools.islice(records, INFER_SAMPLE))
        sample = [r.data for r in head if r.data is not None]
        if head and not sample:
            raise DocumentError(f"{data}: none of the first {len(head)} records could be read to infer a schema "
                                f"(line {head[0].line}: {head[0].error})", [(r.line, "", r.error or "") for r in head])
        inference = complete(raw, sample, origin=str(schema_file)) if raw is not None else infer(sample)
        records = itertools.chain(head, records)
    schema = inference.schema
    if columns:
        data_ = schema.to_dict()
        data_["catalog"] = {**data_.get("catalog", {}), "columns": list(columns)}
        schema = Schema.from_dict(data_, origin="schema with --columns")
    if vectors:
        schema = with_vector_field(schema, params=vector_params)
    return Opened(Index.create(index_dir, schema), records, inference.notes, created=True)


def _file_columns(raw: dict | None, schema_file: Path | None) -> list[str] | None:
    catalog = (raw or {}).get("catalog")
    if catalog is None:
        return None
    if not isinstance(catalog, dict):
        raise ConfigError(f"{schema_file}: catalog must be a table ([catalog])")
    columns = catalog.get("columns")
    if columns is not None and (not isinstance(columns, list) or not all(isinstance(c, str) for c in columns)):
        raise ConfigError(f"{schema_file}: catalog.columns: expected a list of column names")
    return columns


def with_vector_field(schema: Schema, name: str = "embedding", params: dict | None = None) -> Schema:
    """The schema plus a vector field `name` over its (non-copy) text fields (`params`: more of its params)."""
    data = schema.to_dict()
    data["fields"][name] = {"kind": "vector", "params": {"source": schema.content_fields(), **(params or {})}}
    return Schema.from_dict(data, origin="schema with --vectors")


@dataclass
class IndexRun:
    """What writing a catalog did: the merged report, commits, documents before and after, warnings."""

    report: WriteReport
    commits: int
    docs_before: int
    docs: int
    warnings: list[str]


def index_records(opened: Opened, on_error: str = "fail", commit_every: int = 0, ray: str | None = None,
                  progress: Callable[[int], None] | None = None) -> IndexRun:
    """Write `opened.records`, committing after every `commit_every` records (0: once at the end), in
    the index's write turn. A failure before the first commit removes an index this run created.
    `ray` (`auto` or a cluster address): the vectors are encoded on Ray, the writing stays here.
    Misuse: `commit_every` of a few records on a large catalog (each commit writes segments and caches)."""
    check_on_error(on_error)
    check_commit_every(commit_every)
    index = opened.index
    docs_before = 0 if opened.created else index.searcher().num_docs
    total, commits = WriteReport(), 0
    chunks: Iterable[Any] = _chunks(opened.records, commit_every) if commit_every > 0 else [opened.records]
    try:
        with ray_encoding(index, ray) as prepare, _writing(index) as writer:
            for chunk in chunks:
                report = writer.add(prepare(chunk) if prepare else chunk, on_error=on_error, progress=progress)
                writer.commit()
                commits += 1
                total.merge(report)
    except BaseException:
        if opened.created and commits == 0:
            index.discard()  # a failed first run leaves nothing behind
        raise
    docs = index.searcher().num_docs
    warnings = _warnings(total, index.schema, docs_before, docs, opened.created)
    return IndexRun(total, commits, docs_before, docs, warnings)


def write_batch(index: Index, records: Sequence[Any] = (), on_error: str = "fail", delete: Sequence[str] = (),
                lock: threading.Lock | None = None, snapshot: Callable[[], Any] | None = None) -> dict[str, Any]:
    """Upsert `records` (dicts keyed by the schema's id field, or `Record`s) and delete the ids in
    `delete`, in one commit inside the index's write turn (other processes' writes wait for it).

    Returns `written`, `deleted` (ids that existed), `docs` after the commit and `rejected` records.
    With `on_error="fail"` a bad record rejects the whole batch (DocumentError lists every problem)
    and nothing is written. `lock`: held around the write (an engine's, so its threads write in turn);
    `snapshot`: the searcher of the new commit that counts `docs` (default: a fresh one)."""
    check_on_error(on_error)
    batch = [r if isinstance(r, Record) else Record(i, r) if isinstance(r, dict)
             else Record(i, None, "expected a JSON object") for i, r in enumerate(records, 1)]
    ids = list(dict.fromkeys(str(i) for i in delete))
    with _writing(index, lock) as writer:
        try:
            report = writer.add(batch, on_error=on_error)
        except DocumentError:
            writer.rollback()
            raise
        # the ids that existed, read inside the write turn (no other writer commits meanwhile)
        existing = [i for i, doc in zip(ids, index.searcher().docs(ids)) if doc is not None] if ids else []
        writer.delete(ids)
        writer.commit()
    return {"written": report.written, "deleted": len(existing), "docs": (snapshot or index.searcher)().num_docs,
            "rejected": [{"record": line, "field": f, "message": m} for line, f, m in report.rejected]}


@contextlib.contextmanager
def _writing(index: Index, lock: threading.Lock | None = None) -> Iterator[Any]:
    """The index's writer inside its write turn (and `lock`): other processes' writes wait for it."""
    if index.read_only:
        index.writer()  # raises: the index layer says why this index cannot be written here
    with lock or contextlib.nullcontext(), write_turn(index.path), index.writer() as writer:
        yield writer


def _chunks(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    it = iter(records)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def _warnings(total: WriteReport, schema: Schema, docs_before: int, docs: int, created: bool) -> list[str]:
    """What happened to the data without being an error: fields never filled, records merged by id."""
    out = []
    for name in total.empty_fields(schema):
        f = schema.fields[name]
        out.append(f"declared field {name} was empty in every record (its source {f.source!r} was never found); "
                   "check the field name or its `from` path")
    replaced = total.written - (docs - docs_before)
    if replaced > 0:
        where = "an earlier record of this catalog" if created else "an earlier record or an indexed document"
        out.append(f"{replaced} of {total.written} records had the id of {where} and replaced it "
                   f"(id field {schema.id_field!r}; ids are compared after trimming and NFKC normalization)")
    return out


# ---- vector fields kept elsewhere, and encoding on Ray (heavy imports stay lazy) --------------------
@contextlib.contextmanager
def ray_encoding(index: Index, address: str | None) -> Iterator[Callable[[list[Record]], Iterable[Record]] | None]:
    """For `--ray`: a function through which records get their vectors computed on Ray (None without
    an address)."""
    if not address:
        yield None
        return
    if not index.schema.vector_fields:
        raise ConfigError("--ray encodes vectors: it applies to an index with a vector field (--vectors)")
    from souk.index.vectors.ray_encoding import RayEncoding

    with ray_cluster(address), RayEncoding(index) as encoding:
        yield encoding.records


def ray_cluster(address: str | None) -> contextlib.AbstractContextManager:
    """A Ray cluster for the block (`auto`: a local one started and stopped; an address: joined; None: none)."""
    from souk.index.vectors.ray_encoding import ray_cluster as cluster

    return cluster(address)


def vector_status(index: Path, field_name: str | None) -> dict[str, Any]:
    """Whether a vector field kept in Milvus is at the index's last commit (see `souk.index.vectors.milvus`)."""
    from souk.index.vectors.milvus import status

    return status(index, field_name)


def rebuild_vectors(index: Path, field_name: str | None,
                    progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Drop and refill a vector field's Milvus collection from the index's last commit."""
    from souk.index.vectors.milvus import rebuild

    return rebuild(index, field_name, progress=progress)


def move_vectors(index: Path, backend: str, uri: str | None, collection: str | None, field_name: str | None,
                 progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Keep a vector field's vectors in another backend (nothing is re-encoded)."""
    from souk.index.vectors.milvus import move

    return move(index, backend, uri, collection, field_name, progress=progress)


def add_words(index: Path, words: Sequence[str], progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Add `words` to the index's own jieba word list (its current list kept) and analyze every document
    again with it in one commit (`souk.index.words.reanalyze`); the list is versioned in the manifest."""
    from souk.analysis.user_words import format_words, read_words
    from souk.index.words import reanalyze

    opened = Index.open(index)
    current = opened.schema.analysis.get("user_dict")
    kept = read_words(current) if current else []
    known = {w for w, _, _ in kept}
    merged = kept + [(w, None, None) for w in dict.fromkeys(words) if w not in known]
    return reanalyze(index, format_words(merged), len(merged), progress)

