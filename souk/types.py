"""The currency between layers: rankings (ids, scores, per-signal scores) and search results.

Lives at the bottom so the index, retrieval, ranking and serving layers all import it downward.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Ranking:
    """Document ids in descending score order; `scores[i]` belongs to `ids[i]`.

    `signals` carries scores that earlier stages saw for the same documents (e.g. `bm25`, `dense`,
    `recall`), aligned with `ids` and NaN where a signal never saw the document: later stages use
    them as features and `explain` shows them. Invariant: every signal array has `len(ids)` entries.
    """

    ids: list[str]
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    signals: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, positions: np.ndarray | slice, scores: np.ndarray | None = None) -> "Ranking":
        """The entries at `positions` (signals follow), optionally with new scores."""
        pos = (
            np.arange(len(self.ids))[positions]
            if isinstance(positions, slice)
            else np.asarray(positions, dtype=np.int64)
        )
        ids = [self.ids[i] for i in pos]
        new_scores = (
            np.asarray(self.scores, dtype=np.float32)[pos] if scores is None else np.asarray(scores, dtype=np.float32)
        )
        return Ranking(ids, new_scores, {n: s[pos] for n, s in self.signals.items()})

    def top(self, k: int) -> "Ranking":
        """The first `k` entries."""
        return self.take(slice(0, max(k, 0)))

    def signal(self, name: str) -> np.ndarray:
        """The named signal, or all-NaN when no stage produced it."""
        return self.signals.get(name, np.full(len(self.ids), np.nan, dtype=np.float32))

    def with_signal(self, name: str, values: np.ndarray) -> "Ranking":
        """This ranking with one more signal (aligned with `ids`)."""
        if len(values) != len(self.ids):
            raise ValueError(f"signal {name!r} has {len(values)} values for {len(self.ids)} documents")
        return Ranking(self.ids, self.scores, {**self.signals, name: np.asarray(values, dtype=np.float32)})

    def pairs(self) -> list[tuple[str, float]]:
        """(id, score) tuples, convenient for run files and printing."""
        scores = np.asarray(self.scores)  # (float32's tolist gives the same floats as a float64 copy would)
        return list(zip(self.ids, (scores if scores.dtype.kind == "f" else scores.astype(np.float64)).tolist()))

    @classmethod
    def empty(cls) -> "Ranking":
        return cls([], np.zeros(0, dtype=np.float32))


@dataclass
class Explanation:
    """How a score came about, as a tree (tantivy's `Explanation`): the score, what it is, its rank in
    the list it belongs to, and the scores it was made from (`children`). `to_dict` is the JSON form.
    Misuse: putting numbers in `description`; each number gets its own child."""

    score: float
    description: str
    rank: int | None = None
    children: list["Explanation"] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"score": self.score, "description": self.description}
        if self.rank is not None:
            out["rank"] = self.rank
        if self.children:
            out["children"] = [c.to_dict() for c in self.children]
        return out


@dataclass
class Hit:
    """One result as shown: id, final score, stored fields, highlighted snippets, and per-stage scores
    (`explain`, filled when asked for)."""

    id: str
    score: float
    doc: dict[str, Any]
    highlights: dict[str, str] = field(default_factory=dict)
    explain: dict[str, Any] = field(default_factory=dict)  # stage -> its `Explanation.to_dict()`
    collapsed: int | None = None  # with collapsing: how many more hits shared this hit's value

    def to_dict(self) -> dict[str, Any]:
        out = {"id": self.id, "score": self.score, "doc": self.doc, "highlights": self.highlights}
        if self.explain:
            out["explain"] = self.explain
        if self.collapsed is not None:
            out["collapsed"] = self.collapsed
        return out


@dataclass
class SearchResult:
    """A page of hits with the total they were drawn from, facets over the same set, and timings.

    `total` and `facets` describe one set of documents: everything the query matched (lexical
    pipelines) or every candidate the pipeline recalled (pipelines with dense recall).
    """

    hits: list[Hit]
    total: int
    terms: list[str]
    facets: dict[str, Any] = field(default_factory=dict)
    took_ms: float = 0.0
    relaxed: bool = False  # the strict query ("phrases", +words) matched nothing, or words were dropped (`dropped`)
    pipeline: str = "keyword"
    offset: int = 0
    timings_ms: dict[str, float] = field(default_factory=dict)
    plan: dict[str, Any] | None = None
    did_you_mean: str | None = None
    searched: str | None = None  # the text searched, when query understanding rewrote the query
    notes: list[str] = field(default_factory=list)  # what the plan did that the user should know
    dropped: list[str] = field(default_factory=list)  # query words left out because too few documents held them all
    partial: int = 0  # documents holding only some of a long query's words, shown after the matched set
    search_id: str | None = None  # the id clicks are reported against (souk.events), once the search is logged
    suggestions: list[str] = field(default_factory=list)  # queries that find something, when this one found nothing

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "total": self.total, "terms": self.terms, "took_ms": round(self.took_ms, 3), "facets": self.facets,
            "relaxed": self.relaxed, "dropped": self.dropped, "partial": self.partial, "pipeline": self.pipeline,
            "offset": self.offset,
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
            "did_you_mean": self.did_you_mean, "suggestions": self.suggestions, "searched": self.searched,
            "notes": self.notes,
            "hits": [h.to_dict() for h in self.hits],
        }
        if self.plan is not None:
            out["plan"] = self.plan
        if self.search_id is not None:
            out["search_id"] = self.search_id
        return out
