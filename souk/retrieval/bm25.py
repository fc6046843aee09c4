"""BM25 recall over the keyword index (tantivy's BM25: k1=1.2, b=0.75, summed over search fields)."""
from __future__ import annotations

from typing import Sequence

from souk.index.filters import Filter
from souk.retrieval.base import Ranking


class BM25Retriever:
    """Keyword recall; ids and scores only, stored documents are never fetched."""

    name = "bm25"

    def __init__(self, searcher):
        self.searcher = searcher

    def retrieve(self, query: str, k: int, filters: Sequence[Filter] | None = None) -> Ranking:
        return self.searcher.bm25(query, k, filters or ())
