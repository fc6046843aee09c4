"""The event log of an index: `DIR/events/segment-<start ns>-<pid>.log`, append-only and crash-safe.

A record is one line, `<crc32 of the JSON, 8 hex> <JSON>\\n`, written with one `write()` on an `O_APPEND`
descriptor. Searches (`kind: search`, the impression: query, plan, filters, sort, page, pipeline, ids shown
in order, session) are written without `fsync` (a killed process keeps what it wrote; the next action's
`fsync` makes them durable too); actions (`click`, `cart`, `purchase`) are fsynced before `append` returns,
so a server acknowledges them only once they are on disk. A process writes to a segment it holds an
exclusive `flock` on (reused across runs while it is small and young; workers of one server get one each),
so records of two processes never interleave. Readers skip a line whose checksum or JSON is wrong (a torn
tail after a crash); a writer taking over a segment first cuts such a tail off. Segments rotate at
`segment_bytes` or `segment_age_s` and are pruned by age (`retention_days`) and total size (`max_bytes`).
Misuse: editing segment files by hand (a changed line fails its checksum and is skipped).
"""
from __future__ import annotations

import fcntl
import json
import os
import secrets
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from souk.errors import ConfigError, QueryError
from souk.limits import (EVENTS_MAX_BYTES, EVENTS_RETENTION_DAYS, EVENTS_SEGMENT_AGE_S, EVENTS_SEGMENT_BYTES,
                         MAX_ACTIONS_PER_REQUEST, MAX_EVENT_ID_CHARS, MAX_KNOWN_SEARCHES)

DIRNAME = "events"
ACTIONS = ("click", "cart", "purchase")
MAX_ID_CHARS = MAX_EVENT_ID_CHARS


@dataclass(frozen=True)
class Retention:
    """How much of the log is kept: `retention_days` of age and `max_bytes` in all; segments rotate at
    `segment_bytes` or `segment_age_s`."""

    retention_days: float = EVENTS_RETENTION_DAYS
    max_bytes: int = EVENTS_MAX_BYTES
    segment_bytes: int = EVENTS_SEGMENT_BYTES
    segment_age_s: float = EVENTS_SEGMENT_AGE_S

    @classmethod
    def from_env(cls) -> "Retention":
        """Overrides from SOUK_EVENTS_RETENTION_DAYS and SOUK_EVENTS_MAX_MB (ConfigError when malformed)."""
        out = cls()
        try:
            days = float(os.environ.get("SOUK_EVENTS_RETENTION_DAYS", out.retention_days))
            mb = float(os.environ.get("SOUK_EVENTS_MAX_MB", out.max_bytes / (1 << 20)))
        except ValueError:
            raise ConfigError("SOUK_EVENTS_RETENTION_DAYS and SOUK_EVENTS_MAX_MB must be numbers") from None
        if days <= 0 or mb <= 0:
            raise ConfigError("SOUK_EVENTS_RETENTION_DAYS and SOUK_EVENTS_MAX_MB must be positive")
        return cls(days, int(mb * (1 << 20)), min(out.segment_bytes, max(int(mb * (1 << 20)) // 4, 4096)))


def encode(record: dict[str, Any]) -> bytes:
    """One framed line: checksum, space, compact JSON, newline."""
    body = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return b"%08x %s\n" % (zlib.crc32(body), body)


def decode(line: bytes) -> dict[str, Any] | None:
    """The record of a framed line, or None when the line is torn or corrupt."""
    if len(line) < 11 or not line.endswith(b"\n") or line[8:9] != b" ":
        return None
    body = line[9:-1]
    try:
        if int(line[:8], 16) != zlib.crc32(body):
            return None
        record = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return record if isinstance(record, dict) else None


def new_search_id() -> str:
    """A fresh search id: 20 random hex characters (unguessable, so clients cannot credit others' searches)."""
    return secrets.token_hex(10)


class EventLog:
    """The event log of one index directory, opened for appending and reading (thread-safe)."""

    def __init__(self, index_path: str | Path, retention: Retention | None = None):
        self.dir = Path(index_path) / DIRNAME
        self.retention = retention or Retention()
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._segment: Path | None = None
        self._opened = 0.0
        self._size = 0
        self._known: dict[str, None] = {}
        self._offsets: dict[str, int] = {}  # bytes of each segment already scanned for search ids
        self._scanned = False

    # ---- writing ------------------------------------------------------------------------------
    def append(self, records: Iterable[dict[str, Any]], durable: bool = True) -> int:
        """Append records (each gets `t`, the time, unless it has one); with `durable`, fsync before returning.
        Returns the number written."""
        now = time.time()
        records = list(records)
        data = b"".join(encode({"t": now, **r}) for r in records)
        if not data:
            return 0
        with self._lock:
            fd = self._writable(len(data))
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            self._size += len(data)
            if durable:
                os.fsync(fd)
            for r in records:
                if r.get("kind") == "search":
                    self._remember(r["search_id"])
        return len(data)

    def search(self, record: dict[str, Any]) -> None:
        """Log one impression (not fsynced; see the module docstring) and remember its id."""
        self.append([{"kind": "search", **record}], durable=False)

    def actions(self, events: list[dict[str, Any]]) -> int:
        """Check and durably log what shoppers did; QueryError names the first bad event (nothing is written)."""
        if not isinstance(events, list) or not events:
            raise QueryError("events: send one event object or a non-empty array of them")
        if len(events) > MAX_ACTIONS_PER_REQUEST:
            raise QueryError(f"events: {len(events)} events is over the limit of {MAX_ACTIONS_PER_REQUEST}; split them")
        out = [self._checked(i, e) for i, e in enumerate(events)]
        return self.append(out, durable=True) and len(out)

    def _checked(self, i: int, e: Any) -> dict[str, Any]:
        where = f"events[{i}]"
        if not isinstance(e, dict):
            raise QueryError(f"{where}: expected an object with search_id, type and id")
        extra = set(e) - {"search_id", "type", "id", "position", "session"}
        if extra:
            raise QueryError(f"{where}: unknown field {sorted(extra)[0]!r}; fields: search_id, type, "
                             "id, position, session")
        kind, sid, doc, pos = e.get("type"), e.get("search_id"), e.get("id"), e.get("position")
        if kind not in ACTIONS:
            raise QueryError(f"{where}.type: unknown event type {kind!r}; expected one of {', '.join(ACTIONS)}")
        if not isinstance(sid, str) or not sid or len(sid) > MAX_ID_CHARS:
            raise QueryError(f"{where}.search_id: expected the search_id string of a search response")
        if not self.known(sid):
            raise QueryError(f"{where}.search_id: unknown search id {sid!r} (not issued by this index, or pruned)")
        if isinstance(doc, bool) or not isinstance(doc, (str, int)) or not str(doc) or len(str(doc)) > 1024:
            raise QueryError(f"{where}.id: expected the id of a document shown by that search")
        if pos is not None and (isinstance(pos, bool) or not isinstance(pos, int) or not 1 <= pos <= 100_000):
            raise QueryError(f"{where}.position: expected a 1-based integer position, got {pos!r}")
        session = e.get("session")
        if session is not None and (not isinstance(session, str) or len(session) > MAX_ID_CHARS):
            raise QueryError(f"{where}.session: expected a string of at most {MAX_ID_CHARS} characters")
        out = {"kind": kind, "search_id": sid, "id": str(doc)}
        if pos is not None:
            out["position"] = pos
        if session is not None:
            out["session"] = session
        return out

    def _writable(self, incoming: int) -> int:
        """The descriptor of this process's segment, rotating when it is full or old."""
        now = time.time()
        if self._fd is not None and (self._size + incoming > self.retention.segment_bytes
                                     or now - self._opened > self.retention.segment_age_s):
            self._close()
        if self._fd is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._fd, self._segment, self._size = self._take_segment()
            self._opened = now
            self.prune()
        return self._fd

    def _take_segment(self) -> tuple[int, Path, int]:
        """The newest segment if nobody holds it and it has room (its torn tail cut off), else a new one."""
        for path in sorted(self.segments(), reverse=True)[:1]:
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                break
            size = _repair_tail(fd)
            if size < self.retention.segment_bytes and time.time() - _started(path) < self.retention.segment_age_s:
                return fd, path, size
            os.close(fd)
        path = self.dir / f"segment-{time.time_ns():020d}-{os.getpid()}.log"
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        _fsync_dir(self.dir)
        return fd, path, 0

    def _close(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = self._segment = None

    def close(self) -> None:
        """Flush and release this process's segment."""
        with self._lock:
            self._close()

    def prune(self) -> list[Path]:
        """Remove segments older than the retention or beyond the size limit (oldest first), never one a
        process is writing; returns the removed paths."""
        segments = sorted(self.segments())
        sizes = {p: p.stat().st_size for p in segments if p.exists()}
        total, cutoff, removed = sum(sizes.values()), time.time() - self.retention.retention_days * 86_400, []
        for path in segments:
            if path == self._segment or path not in sizes:
                continue
            too_old = path.stat().st_mtime < cutoff
            if not (too_old or total > self.retention.max_bytes):
                break
            if _held(path):
                continue
            path.unlink(missing_ok=True)
            total -= sizes[path]
            removed.append(path)
        return removed

    # ---- reading ------------------------------------------------------------------------------
    def segments(self) -> list[Path]:
        return (
            [p for p in self.dir.glob("segment-*.log") if p.is_file() and not p.is_symlink()]
            if self.dir.is_dir()
            else []
        )

    def read(self, since: float | None = None, kinds: tuple[str, ...] | None = None) -> Iterator[dict[str, Any]]:
        """Every intact record (segments in start order, then file order), from time `since` on."""
        for path in sorted(self.segments()):
            for record in _records(path):
                if since is not None and float(record.get("t", 0)) < since:
                    continue
                if kinds is None or record.get("kind") in kinds:
                    yield record

    def known(self, search_id: str) -> bool:
        """Whether a search with this id was logged (by this process, or any other since the last look)."""
        with self._lock:
            if search_id in self._known:
                return True
            self._scan()
            return search_id in self._known

    def _remember(self, search_id: str) -> None:
        self._known[search_id] = None
        if len(self._known) > MAX_KNOWN_SEARCHES:
            for old in list(self._known)[: len(self._known) // 10]:
                del self._known[old]

    def _scan(self) -> None:
        """Read search ids from the bytes of every segment not yet scanned (written by other processes)."""
        for path in sorted(self.segments()):
            start = self._offsets.get(path.name, 0)
            try:
                with path.open("rb") as fh:
                    fh.seek(start)
                    for line in fh:
                        if not line.endswith(b"\n"):
                            break  # a record being written right now: read it next time
                        start += len(line)
                        if b'"kind":"search"' in line:
                            record = decode(line)
                            if record is not None and isinstance(record.get("search_id"), str):
                                self._remember(record["search_id"])
            except FileNotFoundError:
                continue
            self._offsets[path.name] = start


def _records(path: Path) -> Iterator[dict[str, Any]]:
    try:
        with path.open("rb") as fh:
            for line in fh:
                record = decode(line)
                if record is not None:
                    yield record
    except FileNotFoundError:
        return


def _repair_tail(fd: int) -> int:
    """Cut a torn last record (no newline) off the file; returns the size kept."""
    size = os.fstat(fd).st_size
    if size == 0:
        return 0
    pos, chunk = size, 65_536
    while pos > 0:
        start = max(0, pos - chunk)
        data = os.pread(fd, pos - start, start)
        cut = data.rfind(b"\n")
        if cut >= 0:
            keep = start + cut + 1
            break
        pos = start
    else:
        keep = 0
    if keep != size:
        os.ftruncate(fd, keep)
        os.fsync(fd)
    return keep


def _started(path: Path) -> float:
    try:
        return int(path.name.split("-")[1]) / 1e9
    except (IndexError, ValueError):
        return 0.0


def _held(path: Path) -> bool:
    """True when another process holds the segment (it is being written)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_LOGS: dict[Path, EventLog] = {}
_LOGS_LOCK = threading.Lock()


def event_log(index_path: str | Path) -> EventLog:
    """The process-wide log of an index (one writer per process per index)."""
    key = Path(index_path).resolve()
    with _LOGS_LOCK:
        log = _LOGS.get(key)
        if log is None:
            log = _LOGS[key] = EventLog(key, Retention.from_env())
        return log
