"""BM25 recall over the keyword index (tantivy's BM25: k1=1.2, b=0.75, summed over search fields).

Option `match` (the recall stage's `match`): None follows the index's `[query] match`; the fused presets
use "any", since their later stages reorder a wide candidate list."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from dataclasses import dataclass
from typing import Literal

from souk.plugins import parse_options
from souk.query.plan import QueryPlan
from souk.retrieval.base import RETRIEVERS
from souk.types import Ranking

if TYPE_CHECKING:
    from souk.index.searcher import Searcher


class BM25Retriever:
    """Keyword recall; ids and scores only, stored documents are never fetched."""

    name = "bm25"

    def __init__(self, searcher: Searcher, match: str | None = None):
        self.searcher = searcher
        self.match = match  # None: the index's `[query] match` (tiers: every word first); "any": plain BM25

    def retrieve(self, plans: Sequence[QueryPlan], k: int) -> list[Ranking]:
        return [self.searcher.bm25(p.text, k, p.filters, expansions=[(e.text, e.weight, e.of) for e in p.expansions],
                                   boosts=p.boost_filters, match=self.match) for p in plans]

    def coverage(self, plan: QueryPlan) -> float:
        return 1.0


@dataclass
class BM25Options:
    """Retriever `bm25`: `match` (None: the index's `[query] match`)."""

    match: Literal["all", "relax", "any"] | None = None


@RETRIEVERS.register("bm25")
def _bm25(searcher: Any, options: dict[str, Any]) -> BM25Retriever:
    return BM25Retriever(searcher, parse_options("retrievers.bm25", options, BM25Options).match)
