"""Retrievers: which documents are candidates for these queries?

A retriever is one method, `retrieve(plans, k) -> list[Ranking]` (batched: one ranking per plan,
honouring each plan's filters), registered by name in `RETRIEVERS` (`@RETRIEVERS.register("name")`); a
factory `(searcher, options)` builds it, reading its options with `parse_options`. `bm25` and `dense` are
the first; a new backend is one class.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

import numpy as np

from souk.index.filters import Filters
from souk.plugins import Registry
from souk.query.plan import QueryPlan
from souk.types import Ranking

if TYPE_CHECKING:
    pass


class Retriever(Protocol):
    """Turns query plans into candidate rankings (top `k` each), honouring `plan.filters`."""

    name: str

    def retrieve(self, plans: Sequence[QueryPlan], k: int) -> list[Ranking]: ...

    def coverage(self, plan: QueryPlan) -> float:
        """How much of this query the retriever can read, 0..1 (fusion scales its weight by it)."""
        ...


def nearest(searcher: Any, plans: Sequence[QueryPlan], k: int, encode: Callable[[list[QueryPlan]], Any],
            search: Callable[[Any, int, Filters | None], tuple[Any, Any]],
            min_score: float | None = None) -> list[Ranking]:
    """Vector recall shared by vector retrievers: plans with text are encoded in one batch, then searched
    once per distinct filter list (`search(vectors, k, filters)` -> keys, scores; -1 keys are gaps; `filters`
    is a `Filters`: the structured filters, and the allowed keys on demand); plans with empty text find
    nothing, and with `min_score` neither do scores at or below it."""
    out: list[Ranking] = [Ranking.empty() for _ in plans]
    live = [i for i, p in enumerate(plans) if p.text.strip()]
    if not live or k <= 0:
        return out
    vectors = encode([plans[i] for i in live])
    by_filters: dict[int, list[int]] = {}
    for row, i in enumerate(live):
        by_filters.setdefault(id(plans[i].filters) if plans[i].filters else 0, []).append(row)
    for rows in by_filters.values():
        flt = plans[live[rows[0]]].filters
        keys, scores = search(vectors[rows], k, Filters.of(searcher, flt) if flt else None)
        for row, row_keys, row_scores in zip(rows, keys, scores):
            keep = row_keys >= 0 if min_score is None else (row_keys >= 0) & (row_scores > min_score)
            out[live[row]] = Ranking(searcher.keys_to_ids(row_keys[keep]),
                                     np.asarray(row_scores[keep], dtype=np.float32))
    return out


RetrieverFactory = Callable[[Any, dict[str, Any]], Retriever]
RETRIEVERS: Registry[RetrieverFactory] = Registry("retriever", optional={  # each imported only when named
    "bm25": "souk.retrieval.bm25", "dense": "souk.retrieval.dense", "milvus": "souk.retrieval.milvus",
    "wordvec": "souk.retrieval.wordvec"})
