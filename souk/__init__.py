"""souk: search for product catalogs and document collections, Chinese and English.

The flat public API; everything else is reachable through the sub-packages named after the chain.
"""
from typing import TYPE_CHECKING

from souk.plugins import lazy_exports
from souk.version import __version__

if TYPE_CHECKING:
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

__all__ = [
    "ConfigError", "DatasetError", "DocumentError", "Engine", "Field", "Filter", "Hit", "Index", "IndexStateError",
    "ModelError", "Pipeline", "QueryError", "QueryPlan", "Ranking", "Record", "Schema", "SchemaError", "SearchRequest",
    "SearchResult", "SoukError", "__version__", "build_pipeline", "parse_filter", "pipeline_names", "read_catalog",
]

# each name's module imported on first use (`import souk` alone, or the CLI, loads none of them)
__getattr__ = lazy_exports("souk", globals(), {
    "souk.catalogs": ("Record", "read_catalog"), "souk.engine": ("Engine",),
    "souk.errors": ("ConfigError", "DatasetError", "DocumentError", "IndexStateError", "ModelError", "QueryError",
                    "SchemaError", "SoukError"),
    "souk.index": ("Index",), "souk.index.filters": ("Filter", "parse_filter"),
    "souk.index.searcher": ("SearchRequest",), "souk.query.plan": ("QueryPlan",),
    "souk.ranking.pipeline": ("Pipeline", "build_pipeline", "pipeline_names"), "souk.schema": ("Field", "Schema"),
    "souk.types": ("Hit", "Ranking", "SearchResult"),
})
