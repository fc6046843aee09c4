"""Terms the writer analyzed, handed over to the term store built next in the same process.

The writer analyzes every text source of every document it adds (`joined_terms`, one column of space-joined terms
per (analyzer, source) spec); the term store (`souk.index.terms`) needs the same terms of every stored document.
A writer keeps each written batch's ids and columns (`Handover.add`) and, at each commit, publishes what it wrote
so far under the index's path and the commit's id (`Handover.publish`); `take` gives them (once) to the store built
for that very commit in this process, which analyzes only the documents they do not hold (written by another
writer or process). A later batch holding an id replaces an earlier one, as in the index; a rollback drops the
batches written since the last commit. Past `MAX_HANDOVER_BYTES` in memory, batches go to an anonymous temporary
file (gone with the process). An index opened later, or a commit with no handover, builds from the stored
documents alone: the same store either way.
Misuse: adding batches that were not written to the index (their terms would stand for the stored documents').
"""
from __future__ import annotations

import os
import pickle
import tempfile
import threading
from pathlib import Path
from typing import IO, Sequence

from souk.limits import MAX_HANDOVER_BYTES

_PER_STRING = 64  # bytes a Python string costs beside its characters (roughly), for the memory estimate
_LATEST: dict[str, "Handed"] = {}  # real index path -> what its last commit in this process handed over
_LOCK = threading.Lock()

Batch = tuple[list[str], list[list[str | None]]]  # ids, and one column of joined terms per spec


class Handover:
    """The terms a writer wrote since it opened: batches in memory, then spilled past `MAX_HANDOVER_BYTES`."""

    def __init__(self, specs: Sequence[tuple[str, str]], user_dict: str | None, limit: int | None = None):
        self.specs = list(specs)
        self.user_dict = user_dict
        self._limit = MAX_HANDOVER_BYTES if limit is None else limit
        self._batches: list[Batch | tuple[int, int]] = []  # in memory, or (offset, length) in the spill file
        self._held = 0
        self._spill: IO[bytes] | None = None
        self._end = 0  # where the next spilled batch goes
        self._committed = (0, 0, 0)  # batches, bytes held and spill end at the last commit

    def add(self, ids: list[str], columns: list[list[str | None]]) -> None:
        """Keep a written batch's ids and terms (`columns`: one per spec, as `analyze_columns` gives them)."""
        size = sum(sum(map(len, filter(None, c))) for c in columns) + _PER_STRING * len(ids) * (len(columns) + 1)
        if self._held + size <= self._limit:
            self._batches.append((ids, columns))
            self._held += size
            return
        if self._spill is None:
            self._spill = tempfile.TemporaryFile(prefix="souk-terms-")
        data = pickle.dumps((ids, columns), protocol=pickle.HIGHEST_PROTOCOL)
        os.pwrite(self._spill.fileno(), data, self._end)  # (positioned: a store may be reading earlier batches)
        self._batches.append((self._end, len(data)))
        self._end += len(data)

    def publish(self, path: Path, commit_id: str) -> None:
        """What was written so far is the index's commit `commit_id` (replacing its earlier handover)."""
        self._committed = (len(self._batches), self._held, self._end)
        handed = Handed(self._batches[:], self.specs, self.user_dict, self._spill, commit_id)
        with _LOCK:
            _LATEST[os.path.realpath(path)] = handed

    def rollback(self) -> None:
        """Forget the batches written since the last commit."""
        n, self._held, self._end = self._committed
        del self._batches[n:]


class Handed:
    """The batches a writer handed over for one commit, read by the term store."""

    def __init__(self, batches: list, specs: list[tuple[str, str]], user_dict: str | None, spill: IO[bytes] | None,
                 commit_id: str):
        self.commit_id = commit_id
        self.user_dict = user_dict
        self._batches, self._specs, self._spill = batches, specs, spill
        self._read: list[Batch] | None = None

    def batches(self) -> list[Batch]:
        """Every batch, spilled ones read back."""
        if self._read is None:
            fd = self._spill.fileno() if self._spill is not None else -1
            self._read = [pickle.loads(os.pread(fd, b[1], b[0])) if isinstance(b[0], int) else b  # type: ignore
                          for b in self._batches]
        return self._read

    def positions(self, ids: Sequence[str]) -> list[int]:
        """Where each id's terms are among the batches' documents end to end (the last batch holding it wins),
        -1 for an id they do not hold."""
        order: dict[str, int] = {}
        n = 0
        for batch_ids, _ in self.batches():
            order.update(zip(batch_ids, range(n, n + len(batch_ids))))
            n += len(batch_ids)
        get = order.get
        return [get(i, -1) for i in ids]

    def column(self, spec: tuple[str, str]) -> list[str | None] | None:
        """The joined terms of `spec` (analyzer, source) of every handed document end to end; None if not handed."""
        if spec not in self._specs:
            return None
        k = self._specs.index(spec)
        return [t for _, columns in self.batches() for t in columns[k]]


def take(path: Path, commit_id: str, user_dict: str | None) -> Handed | None:
    """The handover of commit `commit_id` of the index at `path` analyzed with `user_dict`, once (None if there is
    none: an index written by another process, or opened later)."""
    key = os.path.realpath(path)
    with _LOCK:
        handed = _LATEST.get(key)
        if handed is None or handed.commit_id != commit_id:
            return None
        del _LATEST[key]
    return handed if handed.user_dict == user_dict else None

