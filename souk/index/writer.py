"""The index writer: validate, analyze and add records; delete by id; commit atomically.

Until `commit()` returns nothing is visible or durable; a crash (even `kill -9`) mid-way leaves the
last committed state fully readable. One writer per index at a time (a lock file enforces it);
readers keep searching their snapshot while a writer writes.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import tantivy

from souk.analysis.registry import get_analyzer
from souk.catalogs import Record
from souk.errors import ConfigError, DocumentError, IndexStateError, SoukError
from souk.index.keys import doc_key
from souk.index.manifest import touch_manifest
from souk.index.store import ID, KEY, SOURCE, guard, keyword_terms, share_commit_files

if TYPE_CHECKING:
    from souk.index import Index
    from souk.schema import Schema

ON_ERROR = ("fail", "skip")
MAX_REPORTED = 50
TURN_FILE = ".souk-write-turn"


@contextlib.contextmanager
def write_turn(path: Path, wait_s: float = 60.0) -> Iterator[None]:
    """Wait (up to `wait_s`) until no other souk process is writing to the index at `path`, and hold
    the turn inside the block: server workers queue their writes instead of failing on tantivy's
    writer lock. The lock is the OS's (flock): a killed writer releases it."""
    try:
        fd = os.open(path / TURN_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        with guard(path, "write"):
            raise e from None
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise IndexStateError(f"{path}: another process has been writing for over {wait_s:.0f} s; "
                                          "try the write again later") from None
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)  # closing releases the lock


@dataclass
class WriteReport:
    """What a batch did: documents written, rejected records as (line, field, message), and how many
    written records had a value for each field (`filled`)."""

    written: int = 0
    rejected: list[tuple[int, str, str]] = field(default_factory=list)
    filled: Counter = field(default_factory=Counter)

    def merge(self, other: "WriteReport") -> None:
        self.written += other.written
        self.rejected.extend(other.rejected)
        self.filled.update(other.filled)

    def empty_fields(self, schema: Schema) -> list[str]:
        """Declared fields (not copies, not vectors) that no written record gave a value: usually a
        misspelled name or `from` path."""
        if not self.written:
            return []
        return [f.name for f in schema.fields.values()
                if not f.copy_from and f.kind != "vector" and not self.filled.get(f.name)]


class Writer:
    """Adds, updates (same id replaces) and deletes documents; `commit()` publishes them."""

    def __init__(self, index: "Index", heap_mb: int = 128, threads: int = 1, batch: int = 256,
                 workers: int | None = None):
        self.index = index
        self._analysis_pool = AnalysisPool(workers)
        self.schema = index.schema
        try:
            self._w = index._tantivy.writer(heap_size=heap_mb * 1_000_000, num_threads=threads)
        except ValueError as e:
            if "LockBusy" in str(e):
                raise IndexStateError(f"{index.path}: another writer holds the index (is another `souk index` "
                                      "running?); wait for it to finish") from None
            with guard(index.path, "write"):
                raise
        self._batch_size = batch
        self._pending: list[dict] = []
        self._mirrors: list | None = None  # vector fields kept in another service (Milvus), synced at commit
        self._analysis = dict(self.schema.analysis)
        self._doc_layout: _Layout | None = None

    # ---- writes ------------------------------------------------------------------------------
    def add(self, records: Iterable[Record], on_error: str = "fail",
            progress: Callable[[int], None] | None = None) -> WriteReport:
        """Validate and add records. `fail`: any bad record rolls back the whole batch and raises
        DocumentError listing every problem; `skip`: good records are kept, rejects are reported."""
        if on_error not in ON_ERROR:
            raise ConfigError(f"on_error must be one of {ON_ERROR}, not {on_error!r}")
        report = WriteReport()
        for rec in records:
            if progress:
                progress(1)
            if rec.error is not None:
                report.rejected.append((rec.line, "", rec.error))
                continue
            values, problems = self.schema.extract(rec.data or {})
            if problems:
                report.rejected.extend((rec.line, f, m) for f, m in problems)
                continue
            if report.rejected and on_error == "fail" or values is None:
                continue  # keep validating to report every problem, but write nothing more
            self._pending.append(values)
            report.filled.update(values.keys())
            if len(self._pending) >= self._batch_size:
                report.written += self._flush()
        if report.rejected and on_error == "fail":
            self.rollback()
            raise DocumentError(_describe(report.rejected), report.rejected)
        report.written += self._flush()
        return report

    def rewrite(self, stored: Iterable[dict]) -> int:
        """Write again documents as the index stored them (`Searcher.docs`), re-analyzed and re-encoded
        with the index's current settings (e.g. a vector field's new model); same id replaces."""
        n = 0
        for values in stored:
            self._pending.append(values)
            n += 1
            if len(self._pending) >= self._batch_size:
                self._flush()
        self._flush()
        return n

    def delete(self, ids: Iterable[str]) -> int:
        """Delete documents by id (visible after commit); returns how many ids were given."""
        n, keys = 0, []
        with guard(self.index.path, "write"):
            for doc_id in ids:
                self._w.delete_documents_by_term(ID, str(doc_id))
                keys.append(doc_key(str(doc_id)))
                n += 1
        for mirror in self._mirror_list():
            mirror.delete(keys)
        return n

    def commit(self, **manifest: Any) -> int:
        """Publish and persist everything since the last commit; returns tantivy's opstamp. `manifest`
        keys are written into the index manifest with the commit record (one atomic write).
        A full disk or a lost permission raises `IndexStateError`; the last commit stays intact."""
        self._flush()
        with guard(self.index.path, "write"):
            opstamp = self._w.commit()
        share_commit_files(self.index.path)
        try:
            touch_manifest(self.index.path, **self._model_records(), **manifest)
        except OSError as e:
            raise IndexStateError(f"{self.index.path}: committed, but the manifest could not be updated: "
                                  f"{e.strerror}") from None
        self._publish_mirrors()
        return opstamp

    def rollback(self) -> None:
        """Drop everything since the last commit."""
        self._pending.clear()
        for mirror in self._mirrors or []:
            mirror.clear()
        with guard(self.index.path, "write"):
            self._w.rollback()

    def close(self) -> None:
        """Wait for background merges and release the writer lock (uncommitted work is dropped)."""
        self._pending.clear()
        self._analysis_pool.close()
        with guard(self.index.path, "write"):
            self._w.wait_merging_threads()

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        try:
            self.close()
        except SoukError:
            if exc_type is None:
                raise  # otherwise the error that ended the block is the one to report

    # ---- internals ---------------------------------------------------------------------------
    def _model_records(self) -> dict:
        if not self.schema.vector_fields:
            return {}
        from souk.index.vectors import field_params, model_record

        return {"models": {vf.name: model_record(field_params(self.index, vf)) for vf in self.schema.vector_fields}}

    def _mirror_list(self) -> list:
        if self._mirrors is None:
            from souk.index.vectors.config import mirrors_for

            self._mirrors = mirrors_for(self.index) if self.schema.vector_fields else []
        return self._mirrors

    def _publish_mirrors(self) -> None:
        """After the tantivy commit: send the commit's writes and deletes to each mirror, stamped with the
        commit id searchers will see. A failure leaves the index committed and the mirror stamped as
        not in step (searches refuse it until `souk vectors rebuild`)."""
        if not self._mirror_list():
            return
        from souk.index.searcher import _digest
        from souk.index.store import meta_path

        commit_id = _digest(meta_path(self.index.path))
        for mirror in self._mirrors or []:
            try:
                mirror.publish(commit_id)
            except SoukError as e:
                raise IndexStateError(f"committed, but the vectors of field {mirror.field} could not be sent to "
                                      f"their store ({e}); run `souk vectors rebuild --index DIR`") from None

    def _flush(self) -> int:
        batch, self._pending = self._pending, []
        if not batch:
            return 0
        vectors = self._encode(batch)
        specs = self._text_sources()
        analyzed = self._analysis_pool.analyze(specs, self._analysis.get("user_dict"),
                                               [[values.get(src) for _, src in specs] for values in batch])
        for mirror in self._mirror_list():
            mirror.stage(batch, vectors[mirror.field])
        with guard(self.index.path, "write"):
            for i, values in enumerate(batch):
                doc_id = values[self.schema.id_field]
                self._w.delete_documents_by_term(ID, doc_id)
                terms = dict(zip(specs, analyzed[i]))
                self._w.add_document(self._document(values, {n: v[i] for n, v in vectors.items()}, terms))
        return len(batch)

    def _text_sources(self) -> list[tuple[str, str]]:
        """(analyzer, source field) pairs the text fields read, each once (copy fields share them)."""
        out: dict[tuple[str, str], None] = {}
        for f in self.schema.fields.values():
            if f.kind == "text":
                for src in f.copy_from or [f.name]:
                    out[(f.analyzer, src)] = None
        return list(out)

    def _encode(self, batch: list[dict]) -> dict:
        out = {}
        for vf in self.schema.vector_fields:
            from souk.index.vectors import encode_documents, field_params
            from souk.index.vectors.encoding import document_texts

            params = field_params(self.index, vf)
            texts = document_texts(self.schema, params, batch)
            out[vf.name] = encode_documents(params, texts, progress=False, description=f"encoding {vf.name}")
        return out

    def _document(self, values: dict, vectors: dict,
                  analyzed: dict[tuple[str, str], str | None] | None = None) -> tantivy.Document:
        doc = tantivy.Document()
        doc_id = values[self.schema.id_field]
        doc.add_text(ID, doc_id)
        doc.add_integer(KEY, doc_key(doc_id))
        layout = self._layout()
        stored = {n: v for n, v in values.items() if n in layout.stored}
        doc.add_bytes(SOURCE, _JSON.encode(stored).encode("utf-8"))
        analyzed = dict(analyzed or {})  # (analyzer, source field) -> terms, shared by copy fields
        for f in layout.fields:
            if f.kind == "text":
                parts: list[str] = []
                for src in f.copy_from or [f.name]:
                    if src in values:
                        key = (f.analyzer, src)
                        terms = analyzed.get(key)
                        if terms is None:
                            analyzer = get_analyzer(f.analyzer, self._analysis.get("user_dict"))
                            terms = analyzed[key] = " ".join(analyzer.terms(values[src]))
                        parts.append(terms)
                if parts:
                    doc.add_text(f.name, parts[0] if len(parts) == 1 else " ".join(parts))
            elif f.kind == "keyword" and f.name in values:
                vals = values[f.name]
                for v in keyword_terms(f, [vals] if isinstance(vals, str) else vals):
                    doc.add_text(f.name, v)
            elif f.kind == "number" and f.name in values:
                doc.add_float(f.name, float(values[f.name]))
        for name, vec in vectors.items():
            doc.add_bytes(name, vec.astype("<f4").tobytes())
        return doc

    def _layout(self) -> "_Layout":
        """The schema's stored field names and the fields a document adds to tantivy (worked out once)."""
        if self._doc_layout is None:
            fields = [f for f in self.schema.fields.values() if f.kind in ("text", "keyword", "number")]
            self._doc_layout = _Layout(frozenset(n for n, f in self.schema.fields.items() if f.stored), fields)
        return self._doc_layout


@dataclass(frozen=True)
class _Layout:
    stored: frozenset[str]
    fields: list


_JSON = json.JSONEncoder(ensure_ascii=False)  # the stored source (what json.dumps(..., ensure_ascii=False) writes)


def analyze_rows(specs: list[tuple[str, str]], user_dict: str | None, rows: list[list[Any]]) -> list[list[str | None]]:
    """The index terms (space-joined) of each row's source values, one per (analyzer, source) spec; None where
    a row has no value. Runs in the writer's process or in an analysis worker."""
    analyzers = [get_analyzer(name, user_dict) for name, _ in specs]
    return [[None if v is None else " ".join(a.terms(v)) for a, v in zip(analyzers, row)] for row in rows]


class AnalysisPool:
    """Analysis of large batches split between this process and worker processes (spawned: started clean,
    never forked from a process with tantivy's threads running; they exit when this process dies), opt-in with
    `workers` or SOUK_ANALYSIS_WORKERS (at most cores - 1). Small batches (a server's upserts) stay in-process;
    a failed worker means the batch is analyzed here.
    Misuse: sharing one pool between writers (each writer closes its own)."""

    MIN_ROWS = 64  # below this, shipping rows to a worker costs more than it saves

    def __init__(self, workers: int | None = None):
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        env = os.environ.get("SOUK_ANALYSIS_WORKERS")
        # opt-in: on 2 shared cores a worker measured slower than none (scifact: 0.32x vs 0.87x bm25s docs/s)
        self.workers = min(workers if workers is not None else (int(env) if env and env.isdigit() else 0),
                           max(cores, 2) - 1)
        self._pool = None

    def analyze(self, specs, user_dict, rows):
        if not specs:
            return [[] for _ in rows]
        if self.workers < 1 or len(rows) < self.MIN_ROWS:
            return analyze_rows(specs, user_dict, rows)
        pool = self._start()
        share = -(-len(rows) // (self.workers + 1))  # this process takes the first share
        futures = [pool.submit(analyze_rows, specs, user_dict, rows[i:i + share])
                   for i in range(share, len(rows), share)]
        out = analyze_rows(specs, user_dict, rows[:share])
        for i, future in zip(range(share, len(rows), share), futures):
            try:
                out += future.result()
            except Exception:  # a worker died (memory, a signal): this process does its share
                self.close()
                self.workers = 0
                out += analyze_rows(specs, user_dict, rows[i:i + share])
        return out

    def _start(self):
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn: a fresh interpreter, never a fork of a process with tantivy's threads running; each worker
            # watches its parent and exits when it is gone (kill -9 of `souk index` leaves no worker behind)
            ctx = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx, initializer=_watch_parent)
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _watch_parent() -> None:
    """In an analysis worker: exit as soon as the writer's process is gone (the pool's pipes would not tell)."""
    import threading

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="souk-parent-watch").start()


def _describe(rejected: list[tuple[int, str, str]]) -> str:
    lines = [f"line {line}: {fld + ': ' if fld else ''}{msg}" for line, fld, msg in rejected[:MAX_REPORTED]]
    more = f"\n... and {len(rejected) - MAX_REPORTED} more" if len(rejected) > MAX_REPORTED else ""
    return f"{len(rejected)} record(s) rejected, nothing from this batch was committed:\n" + "\n".join(lines) + more
