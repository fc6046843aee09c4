"""The `milvus` retriever: dense recall from a vector field kept in a Milvus collection (`index = "milvus"`),
with the plan's filters pushed down as Milvus expressions (see `souk.index.vectors.milvus`).

`dense` does the same on such a field; `milvus` names it explicitly and refuses a field kept locally.
Misuse: expecting it to read fields that are not mirrored (filters on them are refused with the fix).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from souk.errors import ConfigError
from souk.plugins import parse_options
from souk.retrieval.base import RETRIEVERS
from souk.retrieval.dense import DenseOptions, DenseRetriever

if TYPE_CHECKING:
    pass


@RETRIEVERS.register("milvus")
def _milvus(searcher: Any, options: dict[str, Any]) -> DenseRetriever:
    retriever = DenseRetriever(searcher, parse_options("retrievers.milvus", options, DenseOptions).field)
    if not getattr(retriever.vectors, "pushes_filters", False):
        raise ConfigError("retriever milvus: this vector field is kept in the index, not in Milvus; index with "
                          "--vector-backend milvus --vector-uri URI (or use the dense retriever)")
    retriever.name = "milvus"
    return retriever
