"""Pipelines `dense` and `hybrid` (registered on import by `souk.ranking.pipeline`).

Options (index config `[pipelines.dense]` / `[pipelines.hybrid]`; unknown keys are errors):
  field   the vector field (default: the only one)
  depth   candidates per retriever: an int, or {bm25 = N, dense = N}   (default 100; never below k)
  fusion  "weighted" | "rrf"                  (hybrid; default "weighted")
  norm    "minmax" | "zscore" for "weighted"  (default "minmax")
  weights {bm25 = w, dense = w}               (default 1 and 0.7; dense scaled per query by the share of
                                              the query its encoder was trained to read)
  rrf_k   RRF's rank offset                   (default 60)
Defaults: see HYBRID_DEFAULTS (chosen on the SciFact and HomeDepot train splits, confirmed on dev).
"""
from __future__ import annotations

from numbers import Real
from typing import Any, Sequence

from souk.errors import ConfigError
from souk.index.filters import Filter
from souk.models.registry import text_coverage
from souk.ranking.pipeline import Pipeline, RetrieverPipeline, check_options, register_pipeline
from souk.retrieval.base import Ranking
from souk.retrieval.bm25 import BM25Retriever
from souk.retrieval.dense import DenseRetriever
from souk.retrieval.fusion import FUSIONS, NORMS, fuse

RETRIEVERS = ("bm25", "dense")
# Chosen on the train splits of two kinds of collection, never on dev: SciFact train (667 queries, scientific
# abstracts) and 2,000 seeded HomeDepot train queries (product titles). Weighted min-max fusion with the dense
# list at 0.7 had the best mean nDCG@10 (SciFact 0.735, HomeDepot 0.386 vs BM25 0.697 / 0.377); equal weights
# did as well on SciFact (0.736) but fell below BM25 on products (0.375); RRF k=60 trailed at every weight.
HYBRID_DEFAULTS: dict[str, Any] = {"fusion": "weighted", "norm": "minmax", "weights": {"bm25": 1.0, "dense": 0.7}, "rrf_k": 60, "depth": 100}


def _per_retriever(name: str, key: str, value: Any, kind: type, default: Any) -> dict[str, Any]:
    """`value` as {retriever: value}: a scalar applies to all; a table names retrievers."""
    if isinstance(value, dict):
        for r, v in value.items():
            if r not in RETRIEVERS:
                raise ConfigError(f"pipelines.{name}.{key}.{r}: unknown retriever; known: {', '.join(RETRIEVERS)}")
            if not isinstance(v, kind) or isinstance(v, bool) or v < 0:
                raise ConfigError(f"pipelines.{name}.{key}.{r}: expected a non-negative number, got {v!r}")
        return {r: value.get(r, default) for r in RETRIEVERS}
    if not isinstance(value, kind) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"pipelines.{name}.{key}: expected a non-negative number or a table, got {value!r}")
    return {r: value for r in RETRIEVERS}


def _choice(name: str, key: str, value: Any, known: Sequence[str]) -> str:
    if value not in known:
        raise ConfigError(f"pipelines.{name}.{key}: expected one of {', '.join(known)}, got {value!r}")
    return value


@register_pipeline("dense")
def _dense(searcher, options: dict[str, Any]) -> Pipeline:
    check_options("dense", options, {"field": str})
    return RetrieverPipeline("dense", DenseRetriever(searcher, options.get("field")))


class HybridPipeline:
    """BM25 and dense recall, each to its depth and under the same filters, fused into one ranking."""

    name = "hybrid"

    def __init__(self, searcher, options: dict[str, Any]):
        check_options("hybrid", options, {"field": str, "fusion": str, "rrf_k": Real, "weights": object, "norm": str, "depth": object})
        opts = {**HYBRID_DEFAULTS, **options}
        self.fusion = _choice("hybrid", "fusion", opts["fusion"], list(FUSIONS))
        self.norm = _choice("hybrid", "norm", opts["norm"], list(NORMS))
        self.rrf_k = float(opts["rrf_k"])
        self.weights = _per_retriever("hybrid", "weights", opts["weights"], Real, 1.0)
        self.depth = _per_retriever("hybrid", "depth", opts["depth"], int, HYBRID_DEFAULTS["depth"])
        self.retrievers = {"bm25": BM25Retriever(searcher), "dense": DenseRetriever(searcher, opts.get("field"))}

    def search(self, query: str, k: int, filters: Sequence[Filter] | None = None) -> Ranking:
        weights = self.query_weights(query)
        rankings = [r.retrieve(query, max(self.depth[n], k), filters) if weights[n] > 0 else Ranking.empty()
                    for n, r in self.retrievers.items()]
        return self.fuse(rankings, k, weights)

    def query_weights(self, query: str) -> dict[str, float]:
        """The configured weights, with the dense one scaled by how much of the query its encoder can read
        (an English-only model gets no say on an all-Chinese query)."""
        model = self.retrievers["dense"].vectors.params["model"]
        return {**self.weights, "dense": self.weights["dense"] * text_coverage(model, query)}

    def fuse(self, rankings: list[Ranking], k: int, weights: dict[str, float] | None = None) -> Ranking:
        """Fuse rankings given in `RETRIEVERS` order with this pipeline's settings."""
        weights = weights or self.weights
        extra = {"rrf_k": self.rrf_k} if self.fusion == "rrf" else {"norm": self.norm}
        return fuse(rankings, self.fusion, [weights[n] for n in self.retrievers], k, **extra)


@register_pipeline("hybrid")
def _hybrid(searcher, options: dict[str, Any]) -> Pipeline:
    return HybridPipeline(searcher, options)
