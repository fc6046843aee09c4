"""The `milvus` retriever: dense recall from a vector field kept in a Milvus collection (`index = "milvus"`),
with the plan's filters pushed down as Milvus expressions (see `souk.index.vectors.milvus`).

`dense` does the same on such a field; `milvus` names it explicitly and refuses a field kept locally.
Misuse: expecting it to read fields that are not mirrored (filters on them are refused with the fix).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from souk.errors import ConfigError
from souk.retrieval.base import register_retriever
from souk.retrieval.dense import DenseRetriever

if TYPE_CHECKING:
    from souk.index.searcher import Searcher


@register_retriever("milvus")
def _milvus(searcher: Searcher, options: dict[str, Any]) -> DenseRetriever:
    unknown = set(options) - {"field"}
    if unknown:
        raise ConfigError(f"retriever milvus: unknown option {sorted(unknown)[0]!r}; allowed: field")
    retriever = DenseRetriever(searcher, options.get("field"))
    if not getattr(retriever.vectors, "pushes_filters", False):
        raise ConfigError("retriever milvus: this vector field is kept in the index, not in Milvus; index with "
                          "--vector-backend milvus --vector-uri URI (or use the dense retriever)")
    retriever.name = "milvus"
    return retriever
