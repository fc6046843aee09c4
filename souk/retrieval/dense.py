"""Dense recall: documents whose vectors are nearest the query's, honouring filters."""
from __future__ import annotations

import weakref
from typing import Sequence

import numpy as np

from souk.errors import ConfigError
from souk.index.filters import Filter
from souk.index.vectors import VectorSet
from souk.retrieval.base import Ranking

_OPEN: "weakref.WeakKeyDictionary[object, dict[str, VectorSet]]" = weakref.WeakKeyDictionary()


def vector_set(searcher, field: str | None = None) -> VectorSet:
    """The searcher's vector set for `field` (default: the only vector field), opened once per searcher."""
    fields = {f.name: f for f in searcher.schema.vector_fields}
    if not fields:
        raise ConfigError("this index has no vector field: declare one (kind = \"vector\") or index with --vectors")
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
    """Query text -> encoder -> FAISS top-k -> ids; filters become an allowed-key set."""

    name = "dense"

    def __init__(self, searcher, field: str | None = None):
        self.searcher = searcher
        self.vectors = vector_set(searcher, field)

    def retrieve(self, query: str, k: int, filters: Sequence[Filter] | None = None) -> Ranking:
        return self.retrieve_many([query], k, filters)[0]

    def retrieve_many(self, queries: Sequence[str], k: int, filters: Sequence[Filter] | None = None) -> list[Ranking]:
        """One Ranking per query; queries are encoded in one batch."""
        allowed = self.searcher.filter_keys(filters) if filters else None
        keys, scores = self.vectors.search(self.vectors.encode_queries(queries), k, allowed)
        out = []
        for row_keys, row_scores in zip(keys, scores):
            keep = row_keys >= 0
            out.append(Ranking(self.searcher.keys_to_ids(row_keys[keep]), np.asarray(row_scores[keep], dtype=np.float32)))
        return out
