"""Dense recall: documents whose vectors are nearest the query's, honouring filters."""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from souk.errors import ConfigError, Unavailable
from souk.index.vectors import VectorSet
from souk.index.vectors.encoding import DEFAULT_ENCODER
from souk.models.registry import text_coverage
from souk.query.plan import QueryPlan
from souk.plugins import parse_options
from souk.retrieval.base import RETRIEVERS, nearest
from souk.types import Ranking

if TYPE_CHECKING:
    from souk.index.searcher import Searcher

_OPEN: "weakref.WeakKeyDictionary[object, dict[str, VectorSet]]" = weakref.WeakKeyDictionary()


def vector_set(searcher, field: str | None = None) -> VectorSet:
    """The searcher's vector set for `field` (default: the only vector field), opened once per searcher."""
    fields = {f.name: f for f in searcher.schema.vector_fields}
    if not fields:
        raise Unavailable("this index has no vector field: declare one (kind = \"vector\") or index with --vectors")
    if field is None and len(fields) > 1:
        raise ConfigError(f"several vector fields ({', '.join(fields)}): name one with `field`")
    name = field or next(iter(fields))
    if name not in fields:
        raise ConfigError(f"field: {name!r} is not a vector field; vector fields: {', '.join(fields)}")
    per_searcher = _OPEN.setdefault(searcher, {})
    if name not in per_searcher:
        per_searcher[name] = VectorSet.open(searcher, fields[name])
    return per_searcher[name]


class DenseRetriever:
    """Query text -> encoder -> vector backend top-k -> ids; the backend gets the plan's filters (`Filters`:
    pushed down by a remote engine such as Milvus, an allowed-key set for FAISS)."""

    name = "dense"

    def __init__(self, searcher: Searcher, field: str | None = None):
        self.searcher = searcher
        self.vectors = vector_set(searcher, field)
        self.vectors.encode_queries(["warm up"])  # the query encoder loads with the pipeline, not in a query's time

    def retrieve(self, plans: Sequence[QueryPlan], k: int) -> list[Ranking]:
        """One Ranking per plan; queries are encoded in one batch (plans with empty text find nothing)."""
        return nearest(self.searcher, plans, k, lambda live: self.vectors.encode_queries([p.text for p in live]),
                       self.vectors.search)

    def coverage(self, plan: QueryPlan) -> float:
        """Share of the query in scripts the encoder was trained on (an English-only model reads no Han);
        1 for a plug-in encoder (`encoder` param), whose model souk does not know."""
        if self.vectors.params.get("encoder", DEFAULT_ENCODER) != DEFAULT_ENCODER:
            return 1.0
        return text_coverage(self.vectors.params["model"], plan.text)


@dataclass
class DenseOptions:
    """Retrievers `dense` and `milvus`: `field`, the vector field (default: the only one)."""

    field: str | None = None


@RETRIEVERS.register("dense")
def _dense(searcher: Any, options: dict[str, Any]) -> DenseRetriever:
    return DenseRetriever(searcher, parse_options("retrievers.dense", options, DenseOptions).field)
