"""Ranking stages: in what order should these candidates be shown?

A stage is one method, `rerank(plan, candidates) -> Ranking`: it reads the candidates the pipeline
hands it (the top `depth` of the previous stage) and returns them with its own scores (the pipeline
orders by them), possibly fewer. Stages register by name in `STAGES` (`@STAGES.register("name")`); a factory
builds one from a `StageContext` (the searcher and the index's fitted models) and its options from the index
config, read with `souk.plugins.parse_options` into the stage's options dataclass.
Misuse: fetching stored documents per candidate inside `rerank`; read fast fields and signals.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

from souk.errors import Unavailable as StageUnavailable  # noqa: F401  (stages raise it when not fitted)
from souk.plugins import Registry
from souk.query.plan import QueryPlan
from souk.types import Ranking


class Stage(Protocol):
    """Candidates in, reordered (and possibly fewer) candidates out."""

    name: str

    def rerank(self, plan: QueryPlan, candidates: Ranking) -> Ranking: ...


@dataclass
class StageContext:
    """What a stage factory may use: the snapshot searcher and the index directory (for fitted models)."""

    searcher: Any

    @property
    def index_path(self):
        return self.searcher.path


StageFactory = Callable[[StageContext, dict[str, Any]], Stage]
STAGES: Registry[StageFactory] = Registry("stage", builtins=(
    "souk.ranking.recall", "souk.ranking.interact", "souk.ranking.ltr", "souk.ranking.clicks", "souk.ranking.rerank"))
