"""The index writer: validate, analyze and add records; delete by id; commit atomically.

Until `commit()` returns nothing is visible or durable; a crash (even `kill -9`) mid-way leaves the
last committed state fully readable. One writer per index at a time (a lock file enforces it);
readers keep searching their snapshot while a writer writes.
"""
from __future__ import annotations

import collections
import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import tantivy

from souk.catalogs import Record
from souk.errors import ConfigError, DocumentError, IndexStateError, SoukError
from souk.index.handover import Handover, kept_keywords
from souk.index.keys import doc_key
from souk.index.manifest import touch_manifest
from souk.index.store import ID, KEY, SOURCE, guard, keyword_terms, share_commit_files

if TYPE_CHECKING:
    from souk.index import Index
    from souk.schema import Schema

ON_ERROR = ("fail", "skip")
MAX_REPORTED = 50
PROGRESS_EVERY = 256  # records between calls of `add`'s progress callback
IDLE_ROUND = 0.7  # idle cores measured round up to a worker from 0.3 of a core
MIN_TICKS = 10  # clock ticks (10 ms each, usually) a core must pass before its idle share is read (`idle_cores`)
MAX_SEEN_IDS = 2_000_000  # ids a writer of a new index remembers to skip deletes (beyond: it deletes before each add)
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
        # batches whose analysis may still run in a worker, in order: (records' values, vectors, terms to come)
        self._queue: collections.deque[tuple[list[dict], dict, Terms]] = collections.deque()
        self._mirrors: list | None = None  # vector fields kept in another service (Milvus), synced at commit
        self._analysis = dict(self.schema.analysis)
        self._doc_layout: _Layout | None = None
        # ids added since this writer opened an index that had no segment (no committed document): an unseen id
        # replaces nothing, so its delete is skipped; None: every add deletes first
        self._seen: set[str] | None = set() if _no_segments(index.path) else None
        # the terms written, for the term store of a commit built in this process (`souk.index.handover`)
        self._handover = Handover(self._text_sources(), kept_keywords(self.schema), self._analysis.get("user_dict"))

    # ---- writes ------------------------------------------------------------------------------
    def add(self, records: Iterable[Record], on_error: str = "fail",
            progress: Callable[[int], None] | None = None) -> WriteReport:
        """Validate and add records. `fail`: any bad record rolls back the whole batch and raises
        DocumentError listing every problem; `skip`: good records are kept, rejects are reported."""
        if on_error not in ON_ERROR:
            raise ConfigError(f"on_error must be one of {ON_ERROR}, not {on_error!r}")
        report = WriteReport()
        shapes: dict[tuple[str, ...], int] = {}  # the names of written records' values -> how many records
        seen = 0  # records read since progress was last told
        for rec in records:
            seen += 1
            if progress and seen >= PROGRESS_EVERY:  # (a terminal's bar redrawn per record costs more than the record)
                progress(seen)
                seen = 0
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
            names = tuple(values)
            shapes[names] = shapes.get(names, 0) + 1
            if len(self._pending) >= self._batch_size:
                report.written += self._flush(more=True)
        if progress and seen:
            progress(seen)
        for names, n in shapes.items():  # (counted per set of names: a Counter update per record costs more)
            report.filled.update(dict.fromkeys(names, n))
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
                self._flush(more=True)
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
        keys are written into the index manifest with the commit record (one atomic write); `vectors`, the
        pinned params of vector fields, with a model inside the index pinned relative to it.
        A full disk or a lost permission raises `IndexStateError`; the last commit stays intact."""
        self._flush()
        try:
            with guard(self.index.path, "write"):
                opstamp = self._w.commit()
        except BaseException:
            self._handover.drop(over=True)  # (what the index holds now is unsure: its store reads it)
            raise
        share_commit_files(self.index.path)
        commit_id = _commit_id(self.index.path)
        self._handover.publish(self.index.path, commit_id)
        if isinstance(manifest.get("vectors"), dict):  # pinned as the manifest keeps them (`pin_model`)
            from souk.index.vectors.config import pin_model

            manifest["vectors"] = {name: pin_model(self.index.path, params) if isinstance(params, dict) else params
                                   for name, params in manifest["vectors"].items()}
        try:
            touch_manifest(self.index.path, **{**self._model_records(), **manifest})  # (the caller's keys win)
        except OSError as e:
            raise IndexStateError(f"{self.index.path}: committed, but the manifest could not be updated: "
                                  f"{e.strerror}") from None
        self._publish_mirrors(commit_id)
        return opstamp

    def rollback(self) -> None:
        """Drop everything since the last commit."""
        self._pending.clear()
        self._queue.clear()
        self._handover.rollback()
        for mirror in self._mirrors or []:
            mirror.clear()
        with guard(self.index.path, "write"):
            self._w.rollback()

    def close(self) -> None:
        """Wait for background merges and release the writer lock (uncommitted work is dropped)."""
        self._pending.clear()
        self._queue.clear()
        self._handover.drop()
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
        from souk.index.vectors.config import pin_model

        # (the pinned `vectors` are written only by the commits that change them, never from this writer's copy
        # of the manifest, which may be older than the file)
        where = self.index.path
        return {"models": {vf.name: pin_model(where, model_record(field_params(self.index, vf)))
                           for vf in self.schema.vector_fields}}

    def _mirror_list(self) -> list:
        if self._mirrors is None:
            from souk.index.vectors.config import mirrors_for

            self._mirrors = mirrors_for(self.index) if self.schema.vector_fields else []
        return self._mirrors

    def _publish_mirrors(self, commit_id: str) -> None:
        """After the tantivy commit: send the commit's writes and deletes to each mirror, stamped with the
        commit id searchers will see. A failure leaves the index committed and the mirror stamped as
        not in step (searches refuse it until `souk vectors rebuild`)."""
        if not self._mirror_list():
            return
        for mirror in self._mirrors or []:
            try:
                mirror.publish(commit_id)
            except SoukError as e:
                raise IndexStateError(f"committed, but the vectors of field {mirror.field} could not be sent to "
                                      f"their store ({e}); run `souk vectors rebuild --index DIR`") from None

    def _flush(self, more: bool = False) -> int:
        """Send the pending batch to analysis and write the batches whose terms are ready, in order; all of
        them unless `more` (more batches follow: the workers may keep analyzing while this process reads on)."""
        batch, self._pending = self._pending, []
        if batch:
            vectors = self._encode(batch)
            specs = self._text_sources()
            terms = self._analysis_pool.submit(specs, self._analysis.get("user_dict"),
                                               [[values.get(src) for values in batch] for _, src in specs],
                                               bulk=more)
            for mirror in self._mirror_list():
                mirror.stage(batch, vectors[mirror.field])
            self._queue.append((batch, vectors, terms))
        written = 0
        while self._queue:
            batch, vectors, terms = self._queue[0]
            if more and len(self._queue) <= self._analysis_pool.ahead and not terms.done():
                break
            self._queue.popleft()
            written += self._write(batch, terms.result(), vectors)
        return written

    def _write(self, batch: list[dict], columns: list[list[str | None]], vectors: dict) -> int:
        """Add a batch's documents to tantivy (`columns`: each text source's terms per document), replacing
        documents with the same id (a new index's unseen ids need no delete: nothing holds them)."""
        layout, id_field, add_document, delete = self._layout(), self.schema.id_field, self._w.add_document, \
            self._w.delete_documents_by_term
        seen, stored, all_stored, keyword, number = self._seen, layout.stored, layout.all_stored, layout.keyword, \
            layout.number
        texts = [(name, _combined([columns[c] for c in cols])) for name, cols in layout.text]
        encode: Callable[[Any, int], Any] = _C_ENCODE or (lambda o, _level: _JSON.iterencode(o))
        document, blake2b = tantivy.Document, hashlib.blake2b
        keys: list[int] = []
        self._handover.begin()  # (a batch that fails half-written leaves its commit with no handover)
        with guard(self.index.path, "write"):
            for i, values in enumerate(batch):
                doc_id = values[id_field]
                if seen is None or doc_id in seen:
                    delete(ID, doc_id)
                elif len(seen) < MAX_SEEN_IDS:
                    seen.add(doc_id)
                else:
                    self._seen = seen = None
                doc = document()
                doc.add_text(ID, doc_id)
                # `doc_key` and `_source`, inline (this loop runs once per document)
                key = int.from_bytes(blake2b(doc_id.encode(), digest_size=8).digest(), "big") >> 1
                doc.add_integer(KEY, key)
                keys.append(key)
                doc.add_bytes(SOURCE, "".join(encode(values if all_stored else
                                                     {n: v for n, v in values.items() if n in stored}, 0)).encode())
                for name, terms in texts:
                    text = terms[i]
                    if text is not None:
                        doc.add_text(name, text)
                for name, f in keyword:
                    vals = values.get(name)
                    if vals is not None:
                        if type(vals) is str:  # the id field (`Schema.extract` gives its one value)
                            vals = [vals]
                        for v in keyword_terms(f, vals) if f.hierarchy else vals:
                            doc.add_text(name, v)
                for name in number:
                    if name in values:
                        doc.add_float(name, float(values[name]))
                for name, vecs in vectors.items():
                    doc.add_bytes(name, vecs[i].astype("<f4").tobytes())
                add_document(doc)
        handover = self._handover
        handover.add([values[id_field] for values in batch], keys, columns,
                     [[values.get(name) for values in batch] for name in handover.keywords])
        return len(batch)

    def _text_sources(self) -> list[tuple[str, str]]:
        """(analyzer, source field) pairs the text fields read, each once (copy fields share them)."""
        out: dict[tuple[str, str], None] = {}
        for f in self.schema.fields.values():
            if f.kind == "text":
                for src in f.copy_from or [f.name]:
                    out[(self.schema.analyzer_of(f), src)] = None
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

    def _layout(self) -> "_Layout":
        """What a document adds to tantivy, worked out once: the stored field names, each text field's sources
        (indexes into `_text_sources`), the keyword and number fields."""
        if self._doc_layout is None:
            specs = {spec: i for i, spec in enumerate(self._text_sources())}
            fields = self.schema.fields.values()
            stored = frozenset(f.name for f in fields if f.stored)
            extracted = {f.name for f in fields if not f.copy_from and f.kind != "vector"}
            self._doc_layout = _Layout(
                stored, extracted <= stored,
                [(f.name, [specs[(self.schema.analyzer_of(f), src)] for src in f.copy_from or [f.name]])
                 for f in fields if f.kind == "text"],
                [(f.name, f) for f in fields if f.kind == "keyword"], [f.name for f in fields if f.kind == "number"])
        return self._doc_layout


@dataclass(frozen=True)
class _Layout:
    stored: frozenset[str]
    all_stored: bool  # every value `Schema.extract` gives is stored
    text: list[tuple[str, list[int]]]
    keyword: list[tuple[str, Any]]
    number: list[str]


def _combined(columns: list[list[str | None]]) -> list[str | None]:
    """The terms of a text field per document from those of its sources (a copy field's several): None where no
    source has a value."""
    if len(columns) == 1:
        return columns[0]
    out = columns[0]
    for more in columns[1:]:
        out = [b if a is None else a if b is None else f"{a} {b}" for a, b in zip(out, more)]
    return out


_JSON = json.JSONEncoder(ensure_ascii=False)  # the stored source (what json.dumps(..., ensure_ascii=False) writes)
# its C encoder made once (`JSONEncoder.encode` makes one per call: a third of the time for a short record)
_C_ENCODE = json.encoder.c_make_encoder and json.encoder.c_make_encoder(  # type: ignore[attr-defined]
    None, _JSON.default, json.encoder.c_encode_basestring, None, ": ", ", ", False, False, True)  # type: ignore


def _commit_id(path: Path) -> str:
    """The id searchers give the index's last commit."""
    from souk.index.searcher import _digest
    from souk.index.store import meta_path

    return _digest(meta_path(path))


def _no_segments(path: Path) -> bool:
    """Whether the keyword index's last commit holds no segment (a new index); False when unreadable."""
    from souk.index.store import meta_path

    try:
        return json.loads(meta_path(path).read_text(encoding="utf-8")).get("segments") == []
    except (OSError, ValueError, AttributeError):
        return False


class Terms:
    """The terms of a batch (columns, as `analyze_columns` gives them): computed here, or to come from a worker
    (computed here after all when the worker failed)."""

    def __init__(self, value: list | None = None, future: Any = None, args: tuple = ()):
        self._value, self._future, self._args = value, future, args

    def done(self) -> bool:
        return self._future is None or self._future.done()

    def result(self) -> list:
        if self._future is not None:
            try:
                self._value = self._future.result()
            except Exception:  # the worker died (memory, a signal) or the batch failed there: this process does it
                from souk.analysis.batch import analyze_columns

                self._value = analyze_columns(*self._args)
            self._future = None
        return self._value  # type: ignore[return-value]


def spare_cores(cores: int) -> int:
    """Cores beside this process's that the machine leaves idle: cores - 1 less the whole part of the 1-minute load
    average (a worker on a busy core only adds its overhead: at load 20 on 2 cores, homedepot took 8.1 s with one,
    6.7 s without; on the quiet 2-core box, load 0.6-1.1, one worker took scifact from 1.32x to 1.94x bm25s)."""
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):  # (not on every platform)
        load = 0.0
    return max(0, cores - 1 - int(load))


def usable_cpus() -> set[int]:
    """The CPUs this process may run on (its affinity where the OS reports one, else every CPU)."""
    return os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))


def cpu_times(cpus: set[int]) -> tuple[int, int] | None:
    """(idle, total) clock ticks so far of the CPUs in `cpus` (Linux's /proc/stat; idle counts I/O wait), or None
    where there is no such file or it names none of them."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            lines = f.read().splitlines()
    except (OSError, ValueError):
        return None
    idle = total = 0
    for line in lines:
        if line.startswith("cpu") and line[3:4].isdigit():
            name, *ticks = line.split()
            if int(name[3:]) in cpus:
                # user nice system idle iowait irq softirq steal (guest time is counted in user already)
                values = [int(t) for t in ticks[:8]]
                idle += values[3] + values[4]
                total += sum(values)
    return (idle, total) if total else None


def idle_cores(before: tuple[int, int], after: tuple[int, int], cpus: int) -> float | None:
    """How many of `cpus` cores stood idle between two `cpu_times` samples; None when under MIN_TICKS ticks a core
    passed (the count is too coarse to tell yet)."""
    ticks = after[1] - before[1]
    if ticks < MIN_TICKS * cpus:
        return None
    return cpus * (after[0] - before[0]) / ticks


class OtherLoad:
    """How many cores other processes kept busy from its creation to `cores()`: the busy clock ticks of the CPUs
    this process may use (`cpu_times`) less this process's own CPU time, over the wall-clock time between. A
    measurement that runs this process on every core (a timing probe) cannot read idle cores; this still sees who
    else ran. Misuse: reading it over a few milliseconds (clock ticks are 10 ms)."""

    def __init__(self) -> None:
        self._cpus = usable_cpus()
        self._ticks, self._own, self._t0 = cpu_times(self._cpus), time.process_time(), time.perf_counter()

    def cores(self) -> float | None:
        """Cores' worth of other processes' work since creation (None where /proc/stat cannot be read)."""
        now = cpu_times(self._cpus)
        wall = time.perf_counter() - self._t0
        if now is None or self._ticks is None or wall <= 0:
            return None
        busy = ((now[1] - self._ticks[1]) - (now[0] - self._ticks[0])) / os.sysconf("SC_CLK_TCK")
        return max(0.0, (busy - (time.process_time() - self._own)) / wall)


class AnalysisPool:
    """Analysis of a bulk load's batches in worker processes (`souk.analysis.worker`) while this process
    validates, writes and reads on. Workers: `workers`, else SOUK_ANALYSIS_WORKERS, else the cores that stood idle
    while this process filled its first batches (`cpu_times`, `idle_cores`; where those cannot be read, the load
    average's `spare_cores`), at most `MAX_WORKERS`; they start once one `add` has filled `BULK_BATCHES` batches, so
    small writes (a server's upserts, a small catalog) never pay their start-up, and take batches once they answer;
    until then, and whenever a worker holds `PER_WORKER` batches, this process analyzes the batch itself. A
    failed worker means its batch is analyzed here and no worker is used again.
    Misuse: sharing one pool between writers (each writer closes its own)."""

    MIN_ROWS = 64  # below this, shipping rows to a worker costs more than it saves
    BULK_BATCHES = 2
    MAX_WORKERS = 4
    # batches a worker may hold before this process analyzes the next one itself: with 2, a worker always has the
    # next batch queued, and this process takes its share of the analysis instead of waiting (at load 20, workers
    # got 8-10 of scifact's 21 batches and 82-109 of homedepot's 214; 13 and 162-172 with 4)
    PER_WORKER = 2
    AHEAD = 8  # batches per worker not yet written before this process waits for the oldest

    def __init__(self, workers: int | None = None):
        cpus = usable_cpus()
        cores = self._cores = len(cpus)
        env = os.environ.get("SOUK_ANALYSIS_WORKERS")
        # the CPU times the idle cores are measured from, when the workers would start (None: decided already)
        self._cpus, self._since = cpus, None
        if workers is None:
            if env and env.isdigit():
                workers = int(env)
            else:
                workers = min(spare_cores(cores), self.MAX_WORKERS)  # (kept where the CPU times cannot be read)
                self._since = cpu_times(cpus)
        self._workers = max(0, min(workers, max(cores, 2) - 1))
        self._started: list[Any] = []  # `souk.analysis.worker.Worker`s
        self._bulk = 0  # bulk batches seen
        self.given = 0  # batches given to workers

    @property
    def workers(self) -> int:
        """Workers this pool starts (or started)."""
        return self._workers

    @workers.setter
    def workers(self, n: int) -> None:  # (a number set here is kept: nothing measured replaces it)
        self._workers, self._since = n, None

    @property
    def ahead(self) -> int:
        """How many batches may wait for their terms (or to be written) while this process reads on."""
        return self.AHEAD * len(self._started)

    def submit(self, specs: list[tuple[str, str]], user_dict: str | None, columns: list[list[str | None]],
               bulk: bool = False) -> Terms:
        """The terms of `columns` (one column of texts per (analyzer, source) spec), now or to come. `bulk`: more
        batches follow in the same write (a large catalog)."""
        from souk.analysis.batch import analyze_columns

        args = (specs, user_dict, columns)
        if specs and bulk and len(columns[0]) >= self.MIN_ROWS:
            self._bulk += 1
            if self._bulk >= self.BULK_BATCHES and self._measured() and self.workers > 0:
                worker = self._idle_worker()
                if worker is not None:
                    self.given += 1
                    return Terms(future=worker.submit(*args), args=args)
        return Terms(analyze_columns(*args) if specs else [])

    def _measured(self) -> bool:
        """Whether the number of workers is settled: by default the cores that stood idle beside this process while
        it read and analyzed the first batches (the 1-minute load average counts this very process once it has
        run a while, and a quiet 2-core box then looked busy); False while too little time has passed to tell."""
        if self._since is None:
            return True
        now = cpu_times(self._cpus)
        idle = None if now is None else idle_cores(self._since, now, self._cores)
        if idle is None and now is not None:
            return False  # (this batch is analyzed here; measured again at the next)
        if idle is not None:  # (a core idle 30% of the time gives a worker a share: tantivy's thread has the rest)
            self._workers = max(0, min(int(idle + IDLE_ROUND), self.MAX_WORKERS, max(self._cores, 2) - 1))
        self._since = None
        return True

    def _idle_worker(self) -> Any:
        """The ready worker with the fewest batches, if it has fewer than `PER_WORKER` (starting the workers first)."""
        if not self._started:
            from souk.analysis.worker import Worker

            for _ in range(self.workers):
                try:
                    self._started.append(Worker())
                except OSError:  # no process to be had (limits, no interpreter at sys.executable): fewer workers
                    break
            if not self._started:
                self.workers = 0
                return None
        ready = [w for w in self._started if w.ready.done()]
        if any(w.ready.exception() is not None or not w.alive for w in ready):  # one failed or died: none is used
            self.close()
            self.workers = 0
            return None
        best = min(ready, key=lambda w: w.pending, default=None)
        return best if best is not None and best.pending < self.PER_WORKER else None

    def pids(self) -> list[int]:
        return [w.proc.pid for w in self._started]

    def close(self) -> None:
        for worker in self._started:
            worker.close()
        self._started = []


def _describe(rejected: list[tuple[int, str, str]]) -> str:
    lines = [f"line {line}: {fld + ': ' if fld else ''}{msg}" for line, fld, msg in rejected[:MAX_REPORTED]]
    more = f"\n... and {len(rejected) - MAX_REPORTED} more" if len(rejected) > MAX_REPORTED else ""
    return f"{len(rejected)} record(s) rejected, nothing from this batch was committed:\n" + "\n".join(lines) + more
