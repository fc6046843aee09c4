"""The recall stage: one or more retrievers, each to its depth, fused into one candidate list.

Options (`{stage = "recall", ...}` in `[pipelines.NAME] stages`, or top-level keys of a preset):
  retrievers  names of registered retrievers; "name?" is optional: left out, with a note, when it cannot
              run on this index (no vector field, no fitted model)            (default ["bm25"])
  field       the vector field for `dense`                    (default: the only one)
  depth       candidates per retriever: an int or {bm25 = N, dense = N}   (default 100; never below k)
  fusion      "weighted" | "rrf"                              (default "weighted")
  norm        "minmax" | "zscore" for "weighted"              (default "minmax")
  weights     {bm25 = w, dense = w}  (default 1 and 0.7, a fitted retriever's own `default_weight`
              otherwise; each scaled per query by how much of the query that retriever can read: an
              English-only encoder gets no say on Chinese)
  rrf_k       RRF's rank offset                               (default 60)
  match       the bm25 retriever's matching: "all" | "relax" | "any"  (default: the index's `[query] match`;
              the bm25, hybrid and learned presets use "any": candidates for fusion and reranking)
  options     {NAME = {...}}: a retriever's own options (its options dataclass reads them)
  stacking    false: never reorder by the index's stacking model (default: the active `fusion` model fitted
              for exactly these retrievers reorders the fused list; see `souk.ranking.stacking`)
The fused list carries each retriever's raw scores as signals named after it, plus `recall`.
"""
from __future__ import annotations

import dataclasses
import time
from numbers import Real
from typing import Any, Literal, Sequence

from souk.errors import ConfigError, Unavailable
from souk.plugins import option_check, parse_options
from souk.query.plan import QueryPlan
from souk.ranking.stage import STAGES, Stage, StageContext
from souk.retrieval.base import RETRIEVERS
from souk.retrieval.fusion import FUSIONS, NORMS, fuse
from souk.types import Ranking

# Chosen on the train splits of two kinds of collection, never on dev: SciFact train (667 queries, scientific
# abstracts) and 2,000 seeded HomeDepot train queries (product titles). Weighted min-max fusion with the dense
# list at 0.7 had the best mean nDCG@10 (SciFact 0.735, HomeDepot 0.386 vs BM25 0.697 / 0.377); equal weights
# did as well on SciFact (0.736) but fell below BM25 on products (0.375); RRF k=60 trailed at every weight.
FUSION_DEFAULTS: dict[str, Any] = {"fusion": "weighted", "norm": "minmax", "rrf_k": 60, "depth": 100}
DEFAULT_WEIGHTS = {"bm25": 1.0, "dense": 0.7}


def _distinct(names: list[str]) -> bool:
    return bool(names) and len({n.rstrip("?") for n in names}) == len(names)


@dataclasses.dataclass
class RecallOptions:
    """The recall stage's options (see the module docstring); `None`: not given."""

    retrievers: list[str] = dataclasses.field(default_factory=lambda: ["bm25"], metadata=option_check(
        _distinct, "a list of distinct retriever names"))
    field: str | None = None
    depth: int | dict = FUSION_DEFAULTS["depth"]
    fusion: str = dataclasses.field(default=FUSION_DEFAULTS["fusion"], metadata=option_check(
        lambda v: v in FUSIONS, "one of " + ", ".join(FUSIONS)))
    norm: str = dataclasses.field(default=FUSION_DEFAULTS["norm"], metadata=option_check(
        lambda v: v in NORMS, "one of " + ", ".join(NORMS)))
    weights: dict | None = None
    rrf_k: float = FUSION_DEFAULTS["rrf_k"]
    match: Literal["all", "relax", "any"] | None = None
    options: dict[str, dict] = dataclasses.field(default_factory=dict, metadata=option_check(
        lambda v: all(isinstance(t, dict) for t in v.values()), "a table of retriever name = options table"))
    stacking: bool | None = None  # the active `fusion` model (fitted for these retrievers) reorders; False: never


def _per_retriever(where: str, value: Any, names: Sequence[str], default: dict[str, Any] | Any,
                   kind: type[Real] | type[int]) -> dict[str, Any]:
    """`value` as {retriever: value}: a scalar applies to all; a table names retrievers."""
    if isinstance(value, dict):
        for r, v in value.items():
            if r not in names:
                raise ConfigError(f"{where}.{r}: not a retriever of this stage; retrievers: {', '.join(names)}")
            if not isinstance(v, kind) or isinstance(v, bool) or v < 0:
                raise ConfigError(f"{where}.{r}: expected a non-negative number, got {v!r}")
        base = default if isinstance(default, dict) else {n: default for n in names}
        return {n: value.get(n, base.get(n, 1.0)) for n in names}
    if not isinstance(value, kind) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{where}: expected a non-negative number or a table, got {value!r}")
    return {n: value for n in names}


class RecallStage(Stage):
    """Retrievers under the plan's filters, fused (weights scaled by what each can read)."""

    name = "recall"

    def __init__(self, context: StageContext, options: dict[str, Any], where: str = "recall"):
        opts = parse_options(where, options, RecallOptions)
        wanted = opts.retrievers
        field = {"field": opts.field} if opts.field is not None else {}
        self.retrievers: dict[str, Any] = {}
        self.notes: list[str] = []
        for name in wanted:
            bare = name.rstrip("?")
            try:
                extra = field if bare == "dense" else {"match": opts.match} if bare == "bm25" and opts.match else {}
                self.retrievers[bare] = RETRIEVERS.get(bare)(context.searcher, {**extra, **opts.options.get(bare, {})})
            except Unavailable as e:
                if not name.endswith("?"):
                    raise
                self.notes.append(f"retriever {bare} left out: {e}")
        names = list(self.retrievers)
        self.fusion, self.norm, self.rrf_k = opts.fusion, opts.norm, float(opts.rrf_k)
        # a fitted retriever may carry the weight its fitter chose on held-out train queries (`default_weight`)
        default_weights = {n: float(getattr(r, "default_weight", DEFAULT_WEIGHTS.get(n, 1.0)))
                           for n, r in self.retrievers.items()}
        weights = default_weights if opts.weights is None else opts.weights
        if isinstance(weights, dict):  # weights of optional retrievers that were left out do not apply
            weights = {n: w for n, w in weights.items() if n in names or n + "?" not in wanted}
        self.weights = _per_retriever(f"{where}.weights", weights, names, default_weights, Real)
        self.depth = _per_retriever(f"{where}.depth", opts.depth, names, FUSION_DEFAULTS["depth"], int)
        self.stacker = None  # a learned fusion (`souk.ranking.stacking`), where one was fitted for these retrievers
        if opts.stacking is not False and len(names) > 1:
            from souk.ranking.stacking import active_stacker

            self.stacker = active_stacker(context.index_path, names)

    def recall(self, plans: Sequence[QueryPlan], k: int, timings: dict[str, float] | None = None) -> list[Ranking]:
        """Candidates for each plan (at least `k` deep where the retrievers find that many); with several
        retrievers, `timings` (when given) gets each one's milliseconds per plan."""
        weights, lists = self.lists(plans, k, timings if len(self.retrievers) > 1 else None)
        names = list(self.retrievers)
        if len(names) == 1:
            return [ls[0].with_signal(names[0], ls[0].scores) for ls in lists]
        fused = [self.fuse(ls, w) for ls, w in zip(lists, weights)]
        return self.stacker.rerank(fused, lists) if self.stacker is not None else fused

    def lists(self, plans: Sequence[QueryPlan], k: int,
              timings: dict[str, float] | None = None) -> tuple[list[dict[str, float]], list[list[Ranking]]]:
        """Each plan's retriever weights and its lists (in retriever order, empty where a weight is 0);
        `timings` (when given) gets each retriever's milliseconds per plan."""
        weights = [self.query_weights(p) for p in plans]
        for plan, w in zip(plans, weights):
            for name in self.retrievers:
                note = f"retriever {name} left out: its model cannot read this query"
                if self.weights[name] > 0 and w[name] == 0 and note not in plan.notes:
                    plan.notes.append(note)
        per_retriever: dict[str, list[Ranking]] = {}
        for name, retriever in self.retrievers.items():
            todo = [i for i, w in enumerate(weights) if w[name] > 0]
            t0 = time.perf_counter()
            found = retriever.retrieve([plans[i] for i in todo], max(self.depth[name], k)) if todo else []
            if timings is not None:
                timings[name] = (time.perf_counter() - t0) * 1e3 / max(len(plans), 1)
            lists = [Ranking.empty()] * len(plans)
            for i, r in zip(todo, found):
                lists[i] = r
            per_retriever[name] = lists
        return weights, [[per_retriever[n][i] for n in self.retrievers] for i in range(len(plans))]

    def rerank(self, plan: QueryPlan, candidates: Ranking) -> Ranking:
        """A recall stage later in a pipeline ignores its input and recalls afresh."""
        return self.recall([plan], len(candidates))[0]

    def query_weights(self, plan: QueryPlan) -> dict[str, float]:
        """The configured weights, each scaled by how much of the query that retriever can read."""
        return {n: self.weights[n] * r.coverage(plan) for n, r in self.retrievers.items()}

    def fuse(self, rankings: list[Ranking], weights: dict[str, float] | None = None, k: int | None = None) -> Ranking:
        """Fuse rankings given in retriever order with this stage's settings."""
        weights = weights or self.weights
        extra = {"rrf_k": self.rrf_k} if self.fusion == "rrf" else {"norm": self.norm}
        return fuse(rankings, self.fusion, [weights[n] for n in self.retrievers], k, names=list(self.retrievers),
                    **extra)


@STAGES.register("recall")
def _recall(context: StageContext, options: dict[str, Any]) -> RecallStage:
    return RecallStage(context, options)
