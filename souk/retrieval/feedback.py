"""Pseudo-relevance feedback for the query vector (the `dense` retriever's `prf`).

The e-commerce search notes' recipe: recall the query's top documents lexically (BM25), keep those the
dense model agrees with (also within its own top `agree` by cosine), and add their mean vector, times
`weight`, to the query's; then search again with the moved query. A query no document agrees on keeps its
first list. The weight is chosen on train queries by the `dense` fitter (`souk.training.prf`, option
`dense.prf`) and stored in its model; `weight = 0` is no feedback.
Misuse: choosing the weight on the split you report.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from souk.index.keys import doc_keys
from souk.query.plan import QueryPlan
from souk.retrieval.base import nearest
from souk.types import Ranking

KIND = "dense-prf"
STAGE = "dense"


@dataclass(frozen=True)
class Feedback:
    """How the query vector is moved: `weight` times the mean of the agreeing documents' vectors, taken from
    BM25's top `lexical` that are also within the dense list's top `agree`."""

    weight: float = 0.0
    lexical: int = 5
    agree: int = 20

    @property
    def on(self) -> bool:
        return self.weight > 0


def agreeing(lexical: Ranking, dense: Ranking, fb: Feedback) -> list[str]:
    """Ids in BM25's top `fb.lexical` that are also in the dense list's top `fb.agree`, in BM25's order."""
    near = set(dense.ids[:fb.agree])
    return [d for d in lexical.ids[:fb.lexical] if d in near]


def moved(query: np.ndarray, docs: np.ndarray, weight: float) -> np.ndarray:
    """`query + weight * mean(docs)` (index space; the vector set normalizes before searching)."""
    return np.asarray(query, np.float32) + np.float32(weight) * np.asarray(docs, np.float32).mean(axis=0)


def retrieve_with_feedback(searcher: Any, vectors: Any, plans: Sequence[QueryPlan], k: int,
                           fb: Feedback) -> list[Ranking]:
    """Dense recall for `plans` with the query vectors moved by feedback (see the module docstring); plans
    without an agreeing document keep their first list."""
    first_vectors: dict[int, np.ndarray] = {}

    def encode(live: list[QueryPlan]) -> np.ndarray:
        x = vectors.to_index_space(vectors.encode_queries([p.text for p in live]))
        for p, v in zip(live, x):
            first_vectors[id(p)] = v
        return x

    first = nearest(searcher, plans, max(k, fb.agree), encode, vectors.search_index_space)
    out = [r.top(k) for r in first]
    again: list[int] = []
    new_vectors: dict[int, np.ndarray] = {}
    for i, (plan, ranking) in enumerate(zip(plans, first)):
        if id(plan) not in first_vectors or not len(ranking):
            continue
        lexical = searcher.bm25(plan.text, fb.lexical, plan.filters, match="any")
        ids = agreeing(lexical, ranking, fb)
        docs = vectors.vectors(doc_keys(ids)) if ids else None
        if docs is None or not len(docs):
            continue
        new_vectors[id(plan)] = moved(first_vectors[id(plan)], docs, fb.weight)
        again.append(i)
    if again:
        second = nearest(searcher, [plans[i] for i in again], k,
                         lambda live: np.stack([new_vectors[id(p)] for p in live]), vectors.search_index_space)
        for i, r in zip(again, second):
            out[i] = r
    return out


def read_feedback(path: Any) -> Feedback:
    """The feedback of a fitted `dense` model directory (manifest checked by the one manifest reader)."""
    from souk.models.store import read_model_manifest

    manifest = read_model_manifest(path, kind=KIND)
    prf = manifest["prf"]
    fb = Feedback(float(prf["weight"]), int(prf["lexical"]), int(prf["agree"]))
    if not (0 <= fb.weight <= 100 and 1 <= fb.lexical <= 1000 and 1 <= fb.agree <= 1000):
        raise ValueError("prf parameters out of range")
    return fb


def fitted_feedback(searcher: Any) -> Feedback:
    """The active `dense` model's feedback, or none (weight 0) when no model is active or it fails its checks."""
    from souk.errors import ModelError
    from souk.models import store

    try:
        path = store.resolve(searcher.path, STAGE)
        return Feedback() if path is None else store.cached(path, read_feedback)
    except ModelError:
        return Feedback()
