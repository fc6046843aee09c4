"""Terms the writer analyzed for one commit, handed over to the term store built next in the same process.

The writer analyzes every text source of every document it adds (`joined_terms`, one column of space-joined terms
per (analyzer, source) spec); the term store (`souk.index.terms`) needs the same terms of every stored document,
and its keyword values. A writer keeps each batch written since its last commit (`Handover.add`: ids, keys, term
columns, stored keyword values) and, at the commit, hands them over under the index's path and the commit's id
(`Handover.publish`) and starts the next commit empty. `take` gives them, once, to the store built for that very
commit in this process, which reads no stored document when they cover the commit (a bulk load in one commit), else
reads them all and analyzes only the documents the commit did not write. A later batch holding an id replaces an
earlier one, as in the index; a rollback or `close` drops what was written since the last commit.

Bounds: a writer holds at most `MAX_HANDOVER_BYTES` (estimated) of the commit it is writing; a commit that writes
more hands nothing over (its store is built from the stored documents, as with no handover). The process keeps one
handed-over commit (of any index): the next commit replaces it and `take` drops it; nothing is spilled to disk. An
index opened later, a commit with no handover, or a batch that failed half-written: the store is built from the
stored documents alone. The same store either way.
Misuse: adding batches that were not written to the index (their terms would stand for the stored documents').
"""
from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from souk.limits import MAX_HANDOVER_BYTES

_SLOT = 8  # bytes a list slot costs (the string or value it points to is counted apart)
_PER_STRING = 64  # bytes a Python string costs beside its characters (49-80), roughly
_KEY = 32  # bytes an int key costs
_LATEST: list[tuple[str, "Handed"]] = []  # (real index path, its last commit's handover): one at most
_LOCK = threading.Lock()

# ids, keys (`doc_key`), one column of joined terms per spec, one column of values per keyword field
Batch = tuple[list[str], list[int], list[list[str | None]], list[list[Any]]]


def kept_keywords(schema: Any) -> list[str]:
    """The keyword fields whose values the term store keeps per document (stored ones, not the id): what a writer
    hands over and what the store reads. Misuse: listing them elsewhere (the two sides would drift apart)."""
    return [f.name for f in schema.of_kind("keyword") if f.name != schema.id_field and f.stored]


class Handover:
    """The terms a writer wrote since its last commit, at most `limit` bytes (estimated; default
    `MAX_HANDOVER_BYTES`): past it the commit hands nothing over."""

    def __init__(self, specs: Sequence[tuple[str, str]], keywords: Sequence[str], user_dict: str | None,
                 limit: int | None = None):
        self.specs, self.keywords = list(specs), list(keywords)
        self.user_dict = user_dict
        self._limit = MAX_HANDOVER_BYTES if limit is None else limit
        self._batches: list[Batch] = []
        self.held = 0  # estimated bytes of `_batches`
        self.over = False  # this commit wrote past the limit, or a batch failed half-written: nothing handed over
        self._writing = False  # a batch is being written (`begin`) and not yet kept (`add`)

    def begin(self) -> None:
        """A batch is about to be written: unless `add` keeps it, its commit hands nothing over."""
        self._writing = True

    def add(self, ids: list[str], keys: list[int], columns: list[list[str | None]], keywords: list[list[Any]]) -> None:
        """Keep a written batch: its ids and keys, terms (`columns`: one per spec, as `analyze_columns` gives them)
        and the values of `keywords` fields (one column per field, as stored)."""
        self._writing = False
        if self.over:
            return
        size = _estimate(ids, columns, keywords)
        if self.held + size > self._limit:
            self.drop(over=True)  # (the store of this commit is built from the stored documents)
            return
        self._batches.append((ids, keys, columns, keywords))
        self.held += size

    def drop(self, over: bool = False) -> None:
        """Forget what was written since the last commit; `over`: and keep nothing more until the next commit
        (the limit was passed, or a batch failed half-written)."""
        self._batches, self.held, self.over, self._writing = [], 0, over, False

    def publish(self, path: Path, commit_id: str) -> None:
        """What was written since the last commit is the index's commit `commit_id`: hand it over (replacing any
        earlier handover of this process) and start the next commit empty."""
        handed = Handed(self._batches, self.specs, self.keywords, self.user_dict, commit_id) \
            if self._batches and not self.over and not self._writing else None
        with _LOCK:
            _LATEST[:] = [(os.path.realpath(path), handed)] if handed is not None else []
        self.drop()

    def rollback(self) -> None:
        """Forget the batches written since the last commit."""
        self.drop()


class Handed:
    """The batches a writer handed over for one commit, read by the term store."""

    def __init__(self, batches: list[Batch], specs: list[tuple[str, str]], keywords: list[str],
                 user_dict: str | None, commit_id: str):
        self.commit_id = commit_id
        self.user_dict = user_dict
        self.specs, self.keywords = specs, keywords
        self._batches = batches

    def batches(self) -> list[Batch]:
        """Every batch, in the order written."""
        return self._batches

    def positions(self, keys: np.ndarray) -> list[int]:
        """Where the documents of `keys` (`doc_key`s) are among the batches' documents end to end (the last batch
        holding one wins), -1 for a document they do not hold."""
        order: dict[int, int] = {}
        n = 0
        for _, batch_keys, _, _ in self._batches:
            order.update(zip(batch_keys, range(n, n + len(batch_keys))))
            n += len(batch_keys)
        get = order.get
        return [get(k, -1) for k in keys.tolist()]

    def ids(self) -> list[str]:
        """The ids of the handed documents end to end."""
        return [i for batch in self._batches for i in batch[0]]

    def column(self, spec: tuple[str, str]) -> list[str | None] | None:
        """The joined terms of `spec` (analyzer, source) of every handed document end to end; None if not handed."""
        if spec not in self.specs:
            return None
        k = self.specs.index(spec)
        return [t for batch in self._batches for t in batch[2][k]]

    def keyword(self, name: str) -> list[Any] | None:
        """The values of keyword field `name` of every handed document end to end; None if not handed."""
        if name not in self.keywords:
            return None
        k = self.keywords.index(name)
        return [v for batch in self._batches for v in batch[3][k]]


def take(path: Path, commit_id: str, user_dict: str | None) -> Handed | None:
    """The handover of commit `commit_id` of the index at `path` analyzed with `user_dict`, once (None if there is
    none: an index written by another process, opened later, a commit past the limit or replaced by a later one)."""
    key = os.path.realpath(path)
    with _LOCK:
        if not _LATEST or _LATEST[0][0] != key or _LATEST[0][1].commit_id != commit_id:
            return None
        handed = _LATEST.pop()[1]
    return handed if handed.user_dict == user_dict else None


def held() -> int:
    """How many handed-over commits this process keeps (0 or 1)."""
    return len(_LATEST)


def _estimate(ids: list[str], columns: list[list[str | None]], keywords: list[list[Any]]) -> int:
    """Bytes a batch keeps alive, roughly: its strings (a column priced as its texts joined, `sys.getsizeof`, so each
    character at the widest width in the column, and `_PER_STRING` each; `sys.getsizeof` per string made `add`
    17-33 ms of the writer's CPU on homedepot, this 8-9 ms), keys and list slots; a keyword value that is not a
    string counts `_PER_STRING`."""
    size = (_KEY + _SLOT * (2 + len(columns) + len(keywords))) * len(ids)
    strings: list[Sequence[str | None]] = [ids, *columns]
    strings += [[v for v in values if isinstance(v, str)] for values in keywords]
    for column in strings:
        size += sys.getsizeof("".join(filter(None, column))) + _PER_STRING * len(column)
    for values in keywords:
        size += _PER_STRING * sum(1 for v in values if not isinstance(v, str))
    return size
