"""BM25 recall over the keyword index (tantivy's BM25: k1=1.2, b=0.75, summed over search fields)."""
from __future__ import annotations

from typing import Any, Sequence

from souk.errors import ConfigError
from souk.query.plan import QueryPlan
from souk.retrieval.base import register_retriever
from souk.types import Ranking


class BM25Retriever:
    """Keyword recall; ids and scores only, stored documents are never fetched."""

    name = "bm25"

    def __init__(self, searcher: Any):
        self.searcher = searcher

    def retrieve(self, plans: Sequence[QueryPlan], k: int) -> list[Ranking]:
        return [self.searcher.bm25(p.text, k, p.filters, expansions=[(e.text, e.weight) for e in p.expansions],
                                   boosts=p.boost_filters) for p in plans]

    def coverage(self, plan: QueryPlan) -> float:
        return 1.0


@register_retriever("bm25")
def _bm25(searcher: Any, options: dict[str, Any]) -> BM25Retriever:
    if options:
        raise ConfigError(f"retriever bm25 takes no options, got {', '.join(options)}")
    return BM25Retriever(searcher)
