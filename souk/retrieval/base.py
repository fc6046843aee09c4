"""Retrievers: which documents are candidates for these queries?

A retriever is one method, `retrieve(plans, k) -> list[Ranking]` (batched: one ranking per plan,
honouring each plan's filters), registered by name with `@register_retriever`; a factory builds it
from a searcher and its options. `bm25` and `dense` are the first; a new backend is one class.
"""
from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence

from souk.errors import ConfigError
from souk.query.plan import QueryPlan
from souk.types import Ranking


class Retriever(Protocol):
    """Turns query plans into candidate rankings (top `k` each), honouring `plan.filters`."""

    name: str

    def retrieve(self, plans: Sequence[QueryPlan], k: int) -> list[Ranking]: ...

    def coverage(self, plan: QueryPlan) -> float:
        """How much of this query the retriever can read, 0..1 (fusion scales its weight by it)."""
        ...


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


def build_retriever(name: str, searcher: Any, options: dict[str, Any] | None = None) -> Retriever:
    """The retriever registered as `name`, over `searcher`."""
    _load_builtin()
    if name not in _RETRIEVERS:
        raise ConfigError(f"unknown retriever {name!r}; known retrievers: {', '.join(sorted(_RETRIEVERS))}")
    return _RETRIEVERS[name](searcher, dict(options or {}))


def _load_builtin() -> None:
    import souk.retrieval.bm25  # noqa: F401  (registers bm25)
    import souk.retrieval.dense  # noqa: F401  (registers dense)
    import souk.retrieval.wordvec  # noqa: F401  (registers wordvec)
