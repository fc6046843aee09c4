"""Named search pipelines: a retrieval stage (and later rerank stages) behind one `search` call.

Pipelines are registered by name with `@register_pipeline(name)`; a factory takes a searcher and
the pipeline's options from the index config (`[pipelines.NAME]`) and returns a `Pipeline`.
"""
from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence

from souk.errors import ConfigError
from souk.index.filters import Filter
from souk.retrieval.base import Ranking

Factory = Callable[[Any, dict[str, Any]], "Pipeline"]
_REGISTRY: dict[str, Factory] = {}


class Pipeline(Protocol):
    name: str

    def search(self, query: str, k: int, filters: Sequence[Filter] | None = None) -> Ranking: ...


def register_pipeline(name: str) -> Callable[[Factory], Factory]:
    """Decorator: register a pipeline factory under `name`."""

    def deco(factory: Factory) -> Factory:
        _REGISTRY[name] = factory
        return factory

    return deco


def pipeline_names() -> list[str]:
    _load_presets()
    return sorted(_REGISTRY)


def build_pipeline(name: str, index_or_searcher: Any, options: dict[str, Any] | None = None) -> "Pipeline":
    """The pipeline `name` over an Index (a fresh snapshot is taken) or a Searcher."""
    _load_presets()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown pipeline {name!r}; known pipelines: {', '.join(sorted(_REGISTRY))}")
    searcher = index_or_searcher.searcher() if hasattr(index_or_searcher, "writer") else index_or_searcher
    opts = dict(searcher.schema.pipelines.get(name, {}))
    opts.update(options or {})
    return _REGISTRY[name](searcher, opts)


def check_options(name: str, options: dict[str, Any], allowed: dict[str, type]) -> dict[str, Any]:
    """Validate pipeline options against `allowed` (key -> type); errors name the key."""
    for key, value in options.items():
        if key not in allowed:
            raise ConfigError(f"pipelines.{name}: unknown key {key!r}; allowed: {', '.join(sorted(allowed))}")
        if not isinstance(value, allowed[key]):
            raise ConfigError(f"pipelines.{name}.{key}: expected {allowed[key].__name__}, got {value!r}")
    return options


class RetrieverPipeline:
    """A pipeline made of one retriever."""

    def __init__(self, name: str, retriever):
        self.name = name
        self.retriever = retriever

    def search(self, query: str, k: int, filters: Sequence[Filter] | None = None) -> Ranking:
        return self.retriever.retrieve(query, k, filters)


@register_pipeline("bm25")
def _bm25(searcher, options: dict[str, Any]) -> Pipeline:
    from souk.retrieval.bm25 import BM25Retriever

    check_options("bm25", options, {})
    return RetrieverPipeline("bm25", BM25Retriever(searcher))


def _load_presets() -> None:
    try:
        import souk.ranking.presets  # noqa: F401  (registers dense, hybrid, ...)
    except ModuleNotFoundError as e:
        if e.name != "souk.ranking.presets":
            raise
