"""vectors/: given a query vector, which documents are nearest?

`config.py` (a vector field's params: defaults, checks, pinned at index creation), `backend.py` (the
`VectorBackend` protocol and registry; FAISS `flat|hnsw|ivfpq|sq8`), `vector_set.py` (`VectorSet`: a
backend over document keys plus the fitted transform), `cache.py` (per-commit caches: verified, updated
incrementally, pruned, never outside the index), `encoding.py` (the encoder a field uses).

Misuse to avoid: searching with vectors from another model than the documents', or treating the cache
as the source of truth (delete `vectors/` at will; it is rebuilt).
"""
from souk.index.vectors.backend import (INDEX_TYPES, FaissBackend, VectorBackend, register_vector_backend,
                                        vector_backend,
                                        vector_backend_names)
from souk.index.vectors.cache import KEEP_CACHES, VectorCacheWarning, open_vector_set
from souk.index.vectors.config import DEFAULTS, field_params, validate_params
from souk.index.vectors.encoding import encode_documents, encode_queries, encoder_config, model_record
from souk.index.vectors.vector_set import VectorSet

__all__ = ["DEFAULTS", "INDEX_TYPES", "KEEP_CACHES", "FaissBackend", "VectorBackend", "VectorCacheWarning", "VectorSet",
           "encode_documents", "encode_queries", "encoder_config", "field_params", "model_record", "open_vector_set",
           "register_vector_backend", "validate_params", "vector_backend", "vector_backend_names"]
