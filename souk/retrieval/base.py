"""Retrievers: which documents are candidates for these queries?

A retriever is one method, `retrieve(plans, k) -> list[Ranking]` (batched: one ranking per plan,
honouring each plan's filters), registered by name with `@register_retriever`; a factory builds it
from a searcher and its options. `bm25` and `dense` are the first; a new backend is one class.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

import numpy as np

from souk.errors import ConfigError
from souk.query.plan import QueryPlan
from souk.types import Ranking

if TYPE_CHECKING:
    from souk.index.searcher import Searcher


class Retriever(Protocol):
    """Turns query plans into candidate rankings (top `k` each), honouring `plan.filters`."""

    name: str

    def retrieve(self, plans: Sequence[QueryPlan], k: int) -> list[Ranking]: ...

    def coverage(self, plan: QueryPlan) -> float:
        """How much of this query the retriever can read, 0..1 (fusion scales its weight by it)."""
        ...


def nearest(searcher: Searcher, plans: Sequence[QueryPlan], k: int, encode: Callable[[list[QueryPlan]], Any],
            search: Callable[[Any, int, Any], tuple[Any, Any]], min_score: float | None = None,
            push_down: bool = False) -> list[Ranking]:
    """Vector recall shared by vector retrievers: plans with text are encoded in one batch, then searched
    once per distinct filter list (`search(vectors, k, allowed_keys)` -> keys, scores; -1 keys are gaps;
    with `push_down` the search gets the plan's filters instead of allowed keys and applies them itself);
    plans with empty text find nothing, and with `min_score` neither do scores at or below it."""
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
        restrict = (list(flt) if flt else None) if push_down else (searcher.filter_keys(flt) if flt else None)
        keys, scores = search(vectors[rows], k, restrict)
        for row, row_keys, row_scores in zip(rows, keys, scores):
            keep = row_keys >= 0 if min_score is None else (row_keys >= 0) & (row_scores > min_score)
            out[live[row]] = Ranking(searcher.keys_to_ids(row_keys[keep]),
                                     np.asarray(row_scores[keep], dtype=np.float32))
    return out


RetrieverFactory = Callable[[Any, dict[str, Any]], Retriever]
_RETRIEVERS: dict[str, RetrieverFactory] = {}


def register_retriever(name: str) -> Callable[[RetrieverFactory], RetrieverFactory]:
    """Decorator: register a retriever factory `(searcher, options) -> Retriever` under `name`."""

    def deco(factory: RetrieverFactory) -> RetrieverFactory:
        _RETRIEVERS[name] = factory
        return factory

    return deco


def retriever_names() -> list[str]:
    _load_builtin()
    return sorted(_RETRIEVERS)


def build_retriever(name: str, searcher: Searcher, options: dict[str, Any] | None = None) -> Retriever:
    """The retriever registered as `name`, over `searcher`."""
    _load_builtin()
    if name not in _RETRIEVERS:
        raise ConfigError(f"unknown retriever {name!r}; known retrievers: {', '.join(sorted(_RETRIEVERS))}")
    return _RETRIEVERS[name](searcher, dict(options or {}))


def _load_builtin() -> None:
    import souk.retrieval.bm25  # noqa: F401  (registers bm25)
    import souk.retrieval.dense  # noqa: F401  (registers dense)
    import souk.retrieval.milvus  # noqa: F401  (registers milvus; pymilvus loads only when used)
    import souk.retrieval.wordvec  # noqa: F401  (registers wordvec)
