"""Per-commit resources rebuilt in the background: serve the previous version until the new one is ready.

A lexicon, a speller or a suggester belongs to one commit of an index and takes seconds to build. A
`Refreshing` holds the newest built version for one index (and one configuration): `get(searcher)`
returns it at once, and when the searcher's commit is newer it starts one background thread that
builds the new version and swaps it in when done. Only the very first `get` of a process builds in
the caller (there is nothing older to serve). Build errors are logged and the old version stays.
`refreshing()` names the builds under way (the server's /health shows them).
Misuse: calling `get` with searchers of different indexes on one `Refreshing` (key them by index path).
"""
from __future__ import annotations

import gc
import logging
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Generic, TypeVar

if TYPE_CHECKING:
    from souk.index.searcher import Searcher

log = logging.getLogger("souk.query")
T = TypeVar("T")
_ALL: dict[tuple, "Refreshing"] = {}
_ALL_LOCK = threading.Lock()


class Refreshing(Generic[T]):
    """The newest built version of one per-commit resource of one index."""

    def __init__(self, name: str, build: Callable[[Any], T], prepare: tuple[str, list[str]] | None = None):
        self.name = name
        self._build = build
        self._prepare = prepare  # ("module:function", string args): fills the on-disk cache in a child process
        self._lock = threading.Lock()
        self._first = threading.Lock()  # the one synchronous first build
        self._value: T | None = None
        self._commit: str | None = None
        self._wanted: Any = None  # the newest searcher asked for while a build runs
        self._thread: threading.Thread | None = None

    @property
    def building(self) -> bool:
        return self._thread is not None

    def get(self, searcher: Searcher) -> T:
        """The version of the searcher's commit if built, else the newest older one (a background build
        of the searcher's commit starts); the first call of a process builds in the caller."""
        with self._lock:
            if self._value is not None:
                if self._commit != searcher.commit_id:
                    self._wanted = searcher
                    if not self.building:
                        self._thread = threading.Thread(target=self._run, name=f"souk-refresh-{self.name}", daemon=True)
                        self._thread.start()
                return self._value
        with self._first:
            with self._lock:
                if self._value is not None:
                    return self._value
            value = self._build(searcher)  # errors reach the caller: nothing older to serve
            with self._lock:
                if self._value is None:
                    self._value, self._commit = value, searcher.commit_id
                return self._value

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no background build runs (tests, benchmarks); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (thread := self._thread) is not None:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if deadline is not None and time.monotonic() >= deadline:
                return self._thread is None
        return True

    def _run(self) -> None:
        while True:
            with self._lock:
                searcher, self._wanted = self._wanted, None
                if searcher is None:
                    self._thread = None  # under the lock: a later `get` starts a new thread
                    return
                if searcher.commit_id == self._commit:
                    continue
            try:
                if self._prepare is not None:
                    _in_child(*self._prepare)
                with collector_paused():  # loading allocates much: no full GC pass stalls other threads meanwhile
                    value = self._build(searcher)
            except Exception:  # noqa: BLE001 - a failed rebuild keeps the previous version serving
                log.exception("rebuilding %s for commit %s failed; the previous version stays", self.name,
                              searcher.commit_id)
                continue
            with self._lock:
                self._value, self._commit = value, searcher.commit_id


@contextmanager
def collector_paused():
    """Python's cyclic GC off for the block: a build allocating much would otherwise run full collection
    passes over the whole heap while holding the GIL (100-300 ms pauses measured on a server's event loop)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def refreshing(key: tuple, name: str, build: Callable[[Any], T],
               prepare: tuple[str, list[str]] | None = None) -> Refreshing[T]:
    """The shared `Refreshing` for `key` (index path plus whatever configures the resource).

    `prepare`, when given, names a function (`"module:function"`, string arguments) that builds the
    resource's on-disk cache; background rebuilds run it in a child process at low priority first, so
    the long CPU work (and the GIL it would hold for hundreds of milliseconds at a time) stays out of
    a server's process, and `build` then only loads the cache."""
    with _ALL_LOCK:
        found = _ALL.get(key)
        if found is None:
            found = _ALL[key] = Refreshing(name, build, prepare)
        return found


def _in_child(target: str, args: list[str]) -> None:
    """Run `target(*args)` in a child Python process at low priority; RuntimeError when it fails."""
    import subprocess
    import sys

    # no preexec_fn: the child lowers its own priority, so Python may vfork (no page-table copy of a large server)
    proc = subprocess.run([sys.executable, "-c", "import os, sys; os.nice(10); from souk.query.refresh import _child; "
                           "_child(sys.argv[1:])", target, *args],
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"{target} exited with {proc.returncode}: {proc.stderr.decode(errors='replace')[-500:]}")


def _child(argv: list[str]) -> None:
    import importlib

    module, _, function = argv[0].partition(":")
    getattr(importlib.import_module(module), function)(*argv[1:])


def builds_under_way() -> list[str]:
    """Names of the resources being rebuilt now."""
    with _ALL_LOCK:
        return sorted({r.name for r in _ALL.values() if r.building})


def wait_all(timeout: float | None = None) -> bool:
    """Block until every background build is done (tests, benchmarks)."""
    with _ALL_LOCK:
        items = list(_ALL.values())
    return all(r.wait(timeout) for r in items)
