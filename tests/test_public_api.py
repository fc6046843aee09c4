import souk

EXPECTED = {
    "ConfigError", "DatasetError", "DocumentError", "Engine", "Field", "Filter", "Hit", "Index", "IndexStateError",
    "ModelError", "Pipeline", "QueryError", "QueryPlan", "Ranking", "Record", "Schema", "SchemaError", "SearchRequest",
    "SearchResult", "SoukError", "__version__", "build_pipeline", "parse_filter", "pipeline_names", "read_catalog",
}


def test_exported_names_are_what_was_meant():
    assert set(souk.__all__) == EXPECTED
    for name in set(souk.__all__) - {"__version__"}:
        assert getattr(souk, name).__module__.startswith("souk."), f"{name} is not souk's own"


def test_errors_share_one_base():
    for name in ("ConfigError", "DatasetError", "DocumentError", "IndexStateError", "ModelError", "QueryError",
                 "SchemaError"):
        assert issubclass(getattr(souk, name), souk.SoukError)
