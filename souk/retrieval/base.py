"""The shape every retriever and pipeline returns: a ranked list of document ids with scores."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np


@dataclass
class Ranking:
    """Document ids in descending score order; `scores[i]` belongs to `ids[i]`."""

    ids: list[str]
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.ids)

    def top(self, k: int) -> "Ranking":
        """The first `k` entries."""
        return Ranking(self.ids[:k], self.scores[:k])

    def pairs(self) -> list[tuple[str, float]]:
        """(id, score) tuples, convenient for run files and printing."""
        return list(zip(self.ids, np.asarray(self.scores, dtype=np.float64).tolist()))

    @classmethod
    def empty(cls) -> "Ranking":
        return cls([], np.zeros(0, dtype=np.float32))


class Retriever(Protocol):
    """Anything that turns a query string into a Ranking, honouring filters."""

    def retrieve(self, query: str, k: int, filters: Sequence["object"] | None = None) -> Ranking: ...
