"""Ranking stages: in what order should these candidates be shown?

A stage is one method, `rerank(plan, candidates) -> Ranking`: it reads the candidates the pipeline
hands it (the top `depth` of the previous stage) and returns them with its own scores (the pipeline
orders by them), possibly fewer. Stages register by name in `STAGES` (`@STAGES.register("name")`); a factory
builds one from a `StageContext` (the searcher and the index's fitted models) and its options from the index
config, read with `souk.plugins.parse_options` into the stage's options dataclass.

`rerank_many(plans, candidates)` reranks several queries at once (the pipeline's `run_many` calls it:
evaluation, training, a server's micro-batches); the default loops over `rerank`, and a batched stage (the
cross-encoder) overrides it to score every query's pairs in one pass.
Misuse: fetching stored documents per candidate inside `rerank`; read fast fields and signals.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

from souk.errors import Unavailable as StageUnavailable  # noqa: F401  (stages raise it when not fitted)
from souk.plugins import Registry
from souk.query.plan import QueryPlan
from souk.types import Ranking

if TYPE_CHECKING:
    from souk.index.searcher import Searcher


class Stage(Protocol):
    """Candidates in, reordered (and possibly fewer) candidates out."""

    name: str

    def rerank(self, plan: QueryPlan, candidates: Ranking) -> Ranking: ...

    def rerank_many(self, plans: Sequence[QueryPlan], candidates: Sequence[Ranking]) -> list[Ranking]:
        """`rerank` for several queries (`candidates[i]` belongs to `plans[i]`); a stage that batches
        across queries overrides it. Stages not derived from `Stage` get this loop from `rerank_many()`."""
        return [self.rerank(plan, ranking) for plan, ranking in zip(plans, candidates)]


def rerank_many(stage: Any, plans: Sequence[QueryPlan], candidates: Sequence[Ranking]) -> list[Ranking]:
    """`stage.rerank_many(plans, candidates)`, or its `rerank` per query for a stage without one."""
    many = getattr(stage, "rerank_many", None)
    if many is None:
        return Stage.rerank_many(stage, plans, candidates)
    return many(plans, candidates)


@dataclass
class StageContext:
    """What a stage factory may use: the snapshot searcher and the index directory (for fitted models)."""

    searcher: Searcher

    @property
    def index_path(self):
        return self.searcher.path


StageFactory = Callable[[StageContext, dict[str, Any]], Stage]
STAGES: Registry[StageFactory] = Registry("stage", optional={  # each imported only when named (a CLI search)
    "recall": "souk.ranking.recall", "interact": "souk.ranking.interact", "ltr": "souk.ranking.ltr",
    "clicks": "souk.ranking.clicks", "cross": "souk.ranking.rerank"})
