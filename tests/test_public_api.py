import souk

EXPECTED = {
    "ConfigError", "DatasetError", "DocumentError", "Field", "Filter", "Hit", "Index", "IndexStateError",
    "ModelError", "QueryError", "Ranking", "Record", "Schema", "SchemaError", "SearchRequest", "SearchResult",
    "SoukError", "__version__", "build_pipeline", "parse_filter", "pipeline_names", "read_catalog",
}


def test_exported_names_are_what_was_meant():
    assert set(souk.__all__) == EXPECTED
    for name in souk.__all__:
        assert getattr(souk, name) is not None


def test_errors_share_one_base():
    for name in ("ConfigError", "DatasetError", "DocumentError", "IndexStateError", "ModelError", "QueryError", "SchemaError"):
        assert issubclass(getattr(souk, name), souk.SoukError)
