import pytest

from souk.errors import ConfigError, SchemaError
from souk.schema import Schema, beir_schema, infer_schema, lookup

BASE = {"id": "sku", "fields": {"sku": {"kind": "keyword"}, "title": {"kind": "text", "boost": 2.0}}}


def test_round_trip():
    s = Schema.from_dict(BASE)
    assert Schema.from_dict(s.to_dict()).to_dict() == s.to_dict()
    assert s.search_fields == ["title"]


def test_toml_file_errors_name_the_key(tmp_path):
    bad = tmp_path / "s.toml"
    bad.write_text('id = "sku"\n[fields.sku]\nkind = "keyword"\n[fields.title]\nkind = "txet"\n')
    with pytest.raises(SchemaError, match=r"fields.title.kind: 'txet' is not one of"):
        Schema.load(bad)
    bad.write_text('id = "sku"\n[fields.sku]\nkind = "keyword"\nboots = 2\n')
    with pytest.raises(ConfigError, match=r"fields.sku: unknown key\(s\) \['boots'\]"):
        Schema.load(bad)
    bad.write_text("id = [broken")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Schema.load(bad)


def test_id_must_be_declared():
    with pytest.raises(SchemaError, match="id field 'code' is not declared"):
        Schema.from_dict({"id": "code", "fields": {"title": {"kind": "text"}}})


def test_lookup_paths():
    rec = {"name": {"en": "Cake"}, "prices": [{"price": "10.5"}, {"price": "9"}]}
    assert lookup(rec, "name.en") == "Cake"
    assert lookup(rec, "prices[].price") == ["10.5", "9"]
    assert lookup(rec, "missing.path") is None


def test_extract_types_and_reduce():
    s = Schema.from_dict({"id": "code", "fields": {
        "code": {"kind": "keyword"}, "title": {"kind": "text", "from": "name.en"},
        "price": {"kind": "number", "from": "prices[].price", "reduce": "min"}}})
    values, problems = s.extract({"code": "P1", "name": {"en": "Cake"}, "prices": [{"price": "10.5"}, {"price": "9"}]})
    assert problems == [] and values == {"code": "P1", "title": "Cake", "price": 9.0}


def test_extract_reports_wrong_type_and_missing_id():
    s = Schema.from_dict({"id": "sku", "fields": {"sku": {"kind": "keyword"}, "price": {"kind": "number"}}})
    values, problems = s.extract({"price": "cheap"})
    assert values is None
    assert ("price", "expected a number, got 'cheap'") in problems
    assert any(f == "sku" and "missing id" in m for f, m in problems)


def test_infer_flattens_nested_and_finds_id():
    recs = [{"code": f"P{i}", "name": {"en": f"thing {i}"}, "brand": ["A", "B"][i % 2], "price": str(i + 0.5)} for i in range(40)]
    s = infer_schema(recs)
    assert s.id_field == "code"
    assert s.fields["name_en"].kind == "text" and s.fields["name_en"].source == "name.en"
    assert s.fields["brand"].kind == "keyword"
    assert s.fields["price"].kind == "number"


def test_infer_without_id_says_what_to_do():
    with pytest.raises(SchemaError, match="no id field found"):
        infer_schema([{"title": "x"}])


def test_beir_schema_keeps_beir_names():
    s = beir_schema()
    assert s.id_field == "_id" and {"title", "text"} <= set(s.fields) and s.search_fields == ["all"]


def vector_schema(**params):
    fields = {**BASE["fields"], "all": {"kind": "text", "copy_from": ["title"]}, "vec": {"kind": "vector", "params": params}}
    return Schema.from_dict({"id": "sku", "fields": fields})


@pytest.mark.parametrize("source, message", [
    (["title", "titel"], r"fields.vec.params.source: no field 'titel'"),
    (["all"], r"'all' is a copy field"),
    ("title", r"expected a list of field names"),
])
def test_vector_source_must_name_fields_with_values(source, message):
    with pytest.raises(SchemaError, match=message):
        vector_schema(source=source)


def test_parsing_a_vector_schema_loads_no_model_and_no_index():
    import subprocess
    import sys

    code = ("import sys; from souk.schema import Schema; "
            "Schema.from_dict({'id': 'sku', 'fields': {'sku': {'kind': 'keyword'}, "
            "'vec': {'kind': 'vector', 'params': {'model': 'not-a-model-yet', 'source': ['sku']}}}}); "
            "print(sorted(m for m in sys.modules if m.startswith(('souk.index.vectors', 'souk.models', 'torch'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert vector_schema(source=["title"]).fields["vec"].params == {"source": ["title"]}  # kept as written
