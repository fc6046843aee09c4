"""Dense recall: documents whose vectors are nearest the query's, honouring filters."""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field as option
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from souk.errors import ConfigError, Unavailable
from souk.index.vectors import VectorSet
from souk.index.vectors.encoding import DEFAULT_ENCODER
from souk.models.registry import text_coverage
from souk.query.plan import QueryPlan
from souk.plugins import POSITIVE_INT, option_check, parse_options
from souk.retrieval.base import RETRIEVERS, nearest
from souk.retrieval.feedback import Feedback, fitted_feedback, retrieve_with_feedback
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

    def __init__(self, searcher: Searcher, field: str | None = None, feedback: Feedback | None = None):
        self.searcher = searcher
        self.vectors = vector_set(searcher, field)
        self.vectors.encode_queries(["warm up"])  # the query encoder loads with the pipeline, not in a query's time
        # pseudo-relevance feedback (`souk.retrieval.feedback`): given, else the fitted `dense` model's
        self.feedback = feedback if feedback is not None else fitted_feedback(searcher)
        if self.feedback.on and self.vectors.vectors(np.zeros(0, np.int64)) is None:
            self.feedback = Feedback()  # a backend that cannot give vectors back (Milvus): no feedback

    def retrieve(self, plans: Sequence[QueryPlan], k: int) -> list[Ranking]:
        """One Ranking per plan; queries are encoded in one batch (plans with empty text find nothing)."""
        if self.feedback.on:
            return retrieve_with_feedback(self.searcher, self.vectors, plans, k, self.feedback)
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
    """Retrievers `dense` and `milvus`: `field`, the vector field (default: the only one); `prf`, the weight of
    pseudo-relevance feedback (None: the fitted `dense` model's, 0: none) with `prf_lexical` / `prf_agree`."""

    field: str | None = None
    prf: float | None = option(default=None, metadata=option_check(lambda v: v is None or 0 <= v <= 100,
                                                                   "a weight from 0 to 100"))
    prf_lexical: int = option(default=Feedback.lexical, metadata=POSITIVE_INT)
    prf_agree: int = option(default=Feedback.agree, metadata=POSITIVE_INT)


@RETRIEVERS.register("dense")
def _dense(searcher: Any, options: dict[str, Any]) -> DenseRetriever:
    opts = parse_options("retrievers.dense", options, DenseOptions)
    feedback = None if opts.prf is None else Feedback(opts.prf, opts.prf_lexical, opts.prf_agree)
    return DenseRetriever(searcher, opts.field, feedback)
