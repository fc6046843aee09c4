"""Ranking stages: in what order should these candidates be shown?

A stage is one method, `rerank(plan, candidates) -> Ranking`: it reads the candidates the pipeline
hands it (the top `depth` of the previous stage) and returns them with its own scores (the pipeline
orders by them), possibly fewer. Stages register by name with `@register_stage`; a factory builds one from a
`StageContext` (the searcher and the index's fitted models) and its options from the index config.
Misuse: fetching stored documents per candidate inside `rerank`; read fast fields and signals.
"""
from __future__ import annotations

from dataclasses import dataclass
from numbers import Real
from typing import TYPE_CHECKING, Any, Callable, Protocol

from souk.errors import ConfigError
from souk.errors import Unavailable as StageUnavailable  # noqa: F401  (stages raise it when not fitted)
from souk.query.plan import QueryPlan
from souk.types import Ranking

if TYPE_CHECKING:
    from souk.index.searcher import Searcher


class Stage(Protocol):
    """Candidates in, reordered (and possibly fewer) candidates out."""

    name: str

    def rerank(self, plan: QueryPlan, candidates: Ranking) -> Ranking: ...


@dataclass
class StageContext:
    """What a stage factory may use: the snapshot searcher and the index directory (for fitted models)."""

    searcher: Searcher

    @property
    def index_path(self):
        return self.searcher.path


StageFactory = Callable[[StageContext, dict[str, Any]], Stage]
_STAGES: dict[str, StageFactory] = {}


def register_stage(name: str) -> Callable[[StageFactory], StageFactory]:
    """Decorator: register a stage factory `(context, options) -> Stage` under `name`."""

    def deco(factory: StageFactory) -> StageFactory:
        _STAGES[name] = factory
        return factory

    return deco


def stage_factory(name: str) -> StageFactory:
    load_builtin_stages()
    if name not in _STAGES:
        raise ConfigError(f"unknown stage {name!r}; known stages: {', '.join(sorted(_STAGES))}")
    return _STAGES[name]


def stage_names() -> list[str]:
    load_builtin_stages()
    return sorted(_STAGES)


def check_options(where: str, options: dict[str, Any], allowed: dict[str, type | tuple[type, ...]]) -> dict[str, Any]:
    """Validate options against `allowed` (key -> type); errors name the key as `where.key`."""
    for key, value in options.items():
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key {key!r}; allowed: {', '.join(sorted(allowed)) or 'none'}")
        kind = allowed[key]
        if (kind is Real or kind is int) and isinstance(value, bool) or not isinstance(value, kind):
            name = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise ConfigError(f"{where}.{key}: expected {name}, got {value!r}")
    return options


def positive_int(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}: expected a positive integer, got {value!r}")
    return value


def load_builtin_stages() -> None:
    """Import the modules that register souk's own stages."""
    import souk.ranking.interact  # noqa: F401  (registers interact)
    import souk.ranking.recall  # noqa: F401
    import souk.ranking.ltr  # noqa: F401  (ltr, and clicks through it)
    import souk.ranking.rerank  # noqa: F401
