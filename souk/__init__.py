"""souk: search for product catalogs and document collections, Chinese and English.

The flat public API; everything else is reachable through the sub-packages named after the chain.
"""
from souk.catalogs import Record, read_catalog
from souk.engine import Engine
from souk.errors import (ConfigError, DatasetError, DocumentError, IndexStateError, ModelError, QueryError,
                         SchemaError, SoukError)
from souk.index import Index
from souk.index.filters import Filter, parse_filter
from souk.index.searcher import SearchRequest
from souk.query.plan import QueryPlan
from souk.ranking.pipeline import Pipeline, build_pipeline, pipeline_names
from souk.schema import Field, Schema
from souk.types import Hit, Ranking, SearchResult
from souk.version import __version__

__all__ = [
    "ConfigError", "DatasetError", "DocumentError", "Engine", "Field", "Filter", "Hit", "Index", "IndexStateError",
    "ModelError", "Pipeline", "QueryError", "QueryPlan", "Ranking", "Record", "Schema", "SchemaError", "SearchRequest",
    "SearchResult", "SoukError", "__version__", "build_pipeline", "parse_filter", "pipeline_names", "read_catalog",
]
