"""souk: search for product catalogs and document collections, Chinese and English.

The flat public API; everything else is reachable through the sub-packages named after the chain.
"""
from souk.catalogs import Record, read_catalog
from souk.errors import (ConfigError, DatasetError, DocumentError, IndexStateError, ModelError, QueryError,
                         SchemaError, SoukError)
from souk.index import Index
from souk.index.filters import Filter, parse_filter
from souk.index.searcher import Hit, SearchRequest, SearchResult
from souk.ranking.pipeline import build_pipeline, pipeline_names
from souk.retrieval.base import Ranking
from souk.schema import Field, Schema
from souk.version import __version__

__all__ = [
    "ConfigError", "DatasetError", "DocumentError", "Field", "Filter", "Hit", "Index", "IndexStateError",
    "ModelError", "QueryError", "Ranking", "Record", "Schema", "SchemaError", "SearchRequest", "SearchResult",
    "SoukError", "__version__", "build_pipeline", "parse_filter", "pipeline_names", "read_catalog",
]
