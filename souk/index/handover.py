"""Terms the writer analyzed, handed over to the term store built next in the same process.

The writer analyzes every text source of every document it adds (`joined_terms`, one column of space-joined terms
per (analyzer, source) spec); the term store (`souk.index.terms`) needs the same terms of every stored document,
and its keyword values. A writer keeps each written batch's ids, keys, term columns and stored keyword values
(`Handover.add`) and, at each commit, publishes what it wrote so far under the index's path and the commit's id
(`Handover.publish`); `take` gives them (once) to the store built for that very commit in this process, which
reads no stored document when they cover the commit, else reads them all and analyzes only the documents they do
not hold (written by another writer or process). A later batch holding an id replaces an earlier one, as in the
index; a rollback drops the batches written since the last commit. Past `MAX_HANDOVER_BYTES` in memory, batches
go to an anonymous temporary file (gone with the process). An index opened later, or a commit with no handover,
builds from the stored documents alone: the same store either way.
Misuse: adding batches that were not written to the index (their terms would stand for the stored documents').
"""
from __future__ import annotations

import os
import pickle
import tempfile
import threading
from pathlib import Path
from typing import IO, Any, Sequence

import numpy as np

from souk.limits import MAX_HANDOVER_BYTES

_PER_STRING = 64  # bytes a Python string costs beside its characters (roughly), for the memory estimate
_LATEST: dict[str, "Handed"] = {}  # real index path -> what its last commit in this process handed over
_LOCK = threading.Lock()

# ids, keys (`doc_key`), one column of joined terms per spec, one column of values per keyword field
Batch = tuple[list[str], list[int], list[list[str | None]], list[list[Any]]]


class Handover:
    """The terms a writer wrote since it opened: batches in memory, then spilled past `MAX_HANDOVER_BYTES`."""

    def __init__(self, specs: Sequence[tuple[str, str]], keywords: Sequence[str], user_dict: str | None,
                 limit: int | None = None):
        self.specs, self.keywords = list(specs), list(keywords)
        self.user_dict = user_dict
        self._limit = MAX_HANDOVER_BYTES if limit is None else limit
        self._batches: list[Batch | tuple[int, int]] = []  # in memory, or (offset, length) in the spill file
        self._held = 0
        self._spill: IO[bytes] | None = None
        self._end = 0  # where the next spilled batch goes
        self._committed = (0, 0, 0)  # batches, bytes held and spill end at the last commit

    def add(self, ids: list[str], keys: list[int], columns: list[list[str | None]], keywords: list[list[Any]]) -> None:
        """Keep a written batch: its ids and keys, terms (`columns`: one per spec, as `analyze_columns` gives them)
        and the values of `keywords` fields (one column per field, as stored)."""
        size = sum(sum(map(len, filter(None, c))) for c in columns) + _PER_STRING * len(ids) * (len(columns) + 2)
        size += sum(_PER_STRING * len(c) for c in keywords)
        if self._held + size <= self._limit:
            self._batches.append((ids, keys, columns, keywords))
            self._held += size
            return
        if self._spill is None:
            self._spill = tempfile.TemporaryFile(prefix="souk-terms-")
        data = pickle.dumps((ids, keys, columns, keywords), protocol=pickle.HIGHEST_PROTOCOL)
        os.pwrite(self._spill.fileno(), data, self._end)  # (positioned: a store may be reading earlier batches)
        self._batches.append((self._end, len(data)))
        self._end += len(data)

    def publish(self, path: Path, commit_id: str) -> None:
        """What was written so far is the index's commit `commit_id` (replacing its earlier handover)."""
        self._committed = (len(self._batches), self._held, self._end)
        handed = Handed(self._batches[:], self.specs, self.keywords, self.user_dict, self._spill, commit_id)
        with _LOCK:
            _LATEST[os.path.realpath(path)] = handed

    def rollback(self) -> None:
        """Forget the batches written since the last commit."""
        n, self._held, self._end = self._committed
        del self._batches[n:]


class Handed:
    """The batches a writer handed over for one commit, read by the term store."""

    def __init__(self, batches: list, specs: list[tuple[str, str]], keywords: list[str], user_dict: str | None,
                 spill: IO[bytes] | None, commit_id: str):
        self.commit_id = commit_id
        self.user_dict = user_dict
        self.specs, self.keywords = specs, keywords
        self._batches, self._spill = batches, spill
        self._read: list[Batch] | None = None

    def batches(self) -> list[Batch]:
        """Every batch, spilled ones read back."""
        if self._read is None:
            fd = self._spill.fileno() if self._spill is not None else -1
            self._read = [pickle.loads(os.pread(fd, b[1], b[0])) if isinstance(b[0], int) else b  # type: ignore
                          for b in self._batches]
        return self._read

    def positions(self, keys: np.ndarray) -> list[int]:
        """Where the documents of `keys` (`doc_key`s) are among the batches' documents end to end (the last batch
        holding one wins), -1 for a document they do not hold."""
        order: dict[int, int] = {}
        n = 0
        for _, batch_keys, _, _ in self.batches():
            order.update(zip(batch_keys, range(n, n + len(batch_keys))))
            n += len(batch_keys)
        get = order.get
        return [get(k, -1) for k in keys.tolist()]

    def ids(self) -> list[str]:
        """The ids of the handed documents end to end."""
        return [i for batch in self.batches() for i in batch[0]]

    def column(self, spec: tuple[str, str]) -> list[str | None] | None:
        """The joined terms of `spec` (analyzer, source) of every handed document end to end; None if not handed."""
        if spec not in self.specs:
            return None
        k = self.specs.index(spec)
        return [t for batch in self.batches() for t in batch[2][k]]

    def keyword(self, name: str) -> list[Any] | None:
        """The values of keyword field `name` of every handed document end to end; None if not handed."""
        if name not in self.keywords:
            return None
        k = self.keywords.index(name)
        return [v for batch in self.batches() for v in batch[3][k]]

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

