import tomllib

import pytest

from souk.errors import ConfigError, SchemaError
from souk.schema import Schema, beir_schema, complete, infer, infer_schema, lookup, read_schema_file, to_toml

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
    recs = [{"code": f"P{i}", "name": {"en": f"thing {i}"}, "brand": ["A", "B"][i % 2], "price": str(i + 0.5)}
            for i in range(40)]
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
    fields = {**BASE["fields"], "all": {"kind": "text", "copy_from": ["title"]},
              "vec": {"kind": "vector", "params": params}}
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


# ---- hostile and careless schemas (issue 8) -------------------------------------------------------

@pytest.mark.parametrize("toml, message", [
    ('id = "sku"\n[fields.sku]\nkind = "keyword"\nfrom = 5', r"fields.sku.from: expected a dot path .* got a number 5"),
    ('id = "sku"\npipelines = "x"\n[fields.sku]\nkind = "keyword"', "pipelines must be a table"),
    ('id = "sku"\n[pipelines]\nhybrid = 3\n[fields.sku]\nkind = "keyword"',
     r"pipelines.hybrid must be a table \(\[pipelines.hybrid\]\), got a number 3"),
    ('id = "sku"\n[fields.sku]\nkind = "keyword"\nstored = "no"',
     "fields.sku.stored: expected true or false, got a string 'no'"),
    ('id = "sku"\n[fields.sku]\nkind = "keyword"\n[fields.t]\nkind = "text"\nboost = nan',
     "fields.t.boost: must be a positive finite number"),
    ('id = "sku"\n[fields.sku]\nkind = "keyword"\n[fields.t]\nkind = "text"\ncopy_from = "sku"',
     "fields.t.copy_from: expected a list"),
    ('id = "sku"\n[fields.sku]\nkind = "keyword"\nanalyzer = 3', "fields.sku.analyzer: 3 is not one of"),
    ('id = "sku"\n[fields.sku]', "fields.sku.kind: missing; one of text"),
    ('id = "sku"\nfields = 3', r"\[fields\] must be a table"),
    ('id = "sku"\nanalysis = []\n[fields.sku]\nkind = "keyword"', "analysis must be a table"),
    ('id = "sku"\n[analysis]\nuser_dict = "/no/such/dict.txt"\n[fields.sku]\nkind = "keyword"',
     "analysis.user_dict: /no/such/dict.txt is not a file"),
    ('id = "sku"\n[catalog]\ncolumns = "a,b"\n[fields.sku]\nkind = "keyword"', "catalog.columns: expected a list"),
    ('id = "skus"\n[fields.sku]\nkind = "keyword"',
     r"id field 'skus' is not declared under \[fields\]; did you mean sku\?"),
])
def test_every_key_is_type_checked_with_a_one_line_error(tmp_path, toml, message):
    path = tmp_path / "s.toml"
    path.write_text(toml + "\n")
    with pytest.raises(ConfigError, match=message) as e:
        Schema.load(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_stored_false_is_honoured_and_user_dict_made_absolute(tmp_path, monkeypatch):
    (tmp_path / "dict.txt").write_text("云吞面 5 n\n", encoding="utf-8")
    (tmp_path / "s.toml").write_text('id = "sku"\n[analysis]\nuser_dict = "dict.txt"\n[fields.sku]\nkind = "keyword"\n'
                                     '[fields.note]\nkind = "stored"\nstored = false\n')
    monkeypatch.chdir(tmp_path)
    s = Schema.load("s.toml")
    assert s.fields["note"].stored is False and s.analysis["user_dict"] == str(tmp_path / "dict.txt")


def test_inferred_names_never_collide_silently():
    inf = infer([{"_id": "x1", "id": "7", "a_b": "flat", "a": {"b": "nested"}, "title": "t"}])
    s = inf.schema
    assert s.id_field == "_id" and s.fields["id"].source == "id"
    assert s.fields["a_b"].source == "a_b" and s.fields["a_b_2"].source == "a.b"
    assert any("'a.b' and 'a_b' both make the field name 'a_b'" in n and "'a_b_2'" in n for n in inf.notes)
    values, _ = s.extract({"_id": "x1", "id": "7", "a_b": "flat", "a": {"b": "nested"}})
    assert values["a_b"] == "flat" and values["a_b_2"] == "nested" and values["id"] == 7.0 and values["_id"] == "x1"


def test_one_stray_text_does_not_flip_a_number_column_and_says_so():
    recs = [{"code": f"P{i}", "kcal": str(100 + i)} for i in range(30)] + [{"code": "P99", "kcal": "NOTANUMBER"}]
    inf = infer(recs)
    assert inf.schema.fields["kcal"].kind == "number"
    assert any("30 of 31 sampled values are numbers" in n and "'NOTANUMBER'" in n and "rejected" in n
               for n in inf.notes)
    values, problems = inf.schema.extract({"code": "P99", "kcal": "NOTANUMBER"})
    assert values is None and problems == [("kcal", "expected a number, got 'NOTANUMBER'")]
    mixed = infer([{"code": f"P{i}", "size": str(i) if i % 3 else "XL"} for i in range(30)])
    assert mixed.schema.fields["size"].kind != "number" and any("are numbers" in n for n in mixed.notes)


def test_schema_with_only_an_id_is_completed_by_inference():
    recs = [{"product_name": f"thing {i}", "text": f"a long description of thing {i}", "kcal": i} for i in range(5)]
    inf = complete({"id": "product_name", "search": {"fields": ["text"]}}, recs, origin="s.toml")
    s = inf.schema
    assert s.id_field == "product_name" and s.fields["product_name"].kind == "keyword"
    assert s.fields["kcal"].kind == "number" and s.search_fields == ["text"]
    with pytest.raises(SchemaError, match="id 'product_nam' is not a field of the catalog; did you mean product_name"):
        complete({"id": "product_nam"}, recs)
    assert complete(BASE, recs).schema.to_dict() == Schema.from_dict(BASE).to_dict()  # declared fields win


def test_ids_and_keywords_over_tantivy_term_limit_are_rejected():
    s = Schema.from_dict({"id": "sku", "fields": {"sku": {"kind": "keyword"}, "tag": {"kind": "keyword"}}})
    _, problems = s.extract({"sku": "x" * 65_531})
    assert problems == [("sku", "keyword value of 65531 bytes is longer than the term limit of 65530 bytes")]
    _, problems = s.extract({"sku": "ok", "tag": "é" * 40_000})
    assert problems and problems[0][0] == "tag" and "80000 bytes" in problems[0][1]
    t = Schema.from_dict({"id": "sku", "fields": {"sku": {"kind": "stored"}}})
    _, problems = t.extract({"sku": "y" * 70_000})
    assert problems == [("sku", "id of 70000 bytes is longer than the id limit of 65530 bytes")]


def test_to_toml_round_trips_through_load(tmp_path):
    s = Schema.from_dict({"id": "sku", "fields": {
        "sku": {"kind": "keyword"}, "name": {"kind": "text", "from": "n.\"en\" \u007f", "boost": 2.5},
        "price": {"kind": "number", "from": "prices[].p", "reduce": "min"}, "raw": {"kind": "stored", "stored": False}},
        "pipelines": {"my pipe": {"fusion": "rrf", "weights": [1, 2]}}, "catalog": {"columns": ["sku", "name"]}})
    text = to_toml(s, ["guessed by souk", "second line"])
    assert text.startswith("# guessed by souk\n# second line\n")
    path = tmp_path / "s.toml"
    path.write_text(text, encoding="utf-8")
    assert Schema.load(path).to_dict() == s.to_dict() and read_schema_file(path) == tomllib.loads(text)


# ---- real shop files: prices, id columns, category paths ------------------------------------------
def test_prices_with_currency_and_separators_are_numbers_with_a_unit():
    recs = [{"sku": f"S{i}", "title": f"item {i}", "price": p}
            for i, p in enumerate(["$11.99", "$1,299.50", "$5", "$0.99"] * 5)]
    s = infer_schema(recs)
    assert s.id_field == "sku"
    assert s.fields["price"].kind == "number" and s.fields["price"].unit == "$"
    values, problems = s.extract({"sku": "x", "price": "$1,299.50"})
    assert problems == [] and values["price"] == 1299.5


def test_chinese_prices_and_a_decimal_comma_catalog():
    recs = [{"id": f"J{i}", "价格": p} for i, p in enumerate(["¥1,299", "¥630", "¥89.90"] * 4)]
    s = infer_schema(recs)
    price = next(f for f in s.fields.values() if f.source == "价格")
    assert price.kind == "number" and price.unit == "¥"
    assert s.extract(recs[0])[0][price.name] == 1299.0
    eu = Schema.from_dict({"id": "id", "catalog": {"decimal": ","},
                           "fields": {"id": {"kind": "keyword"}, "price": {"kind": "number", "unit": "EUR"}}})
    values, _ = eu.extract({"id": "a", "price": "1.299,50 €"})
    assert values["price"] == 1299.5
    assert eu.extract({"id": "a", "price": "1.299"})[0]["price"] == 1299.0  # the catalog's decimal comma
    inferred = infer_schema([{"id": str(i), "preis": f"{i}.299,50 €"} for i in range(1, 9)])
    assert inferred.fields["preis"].unit == "€" and inferred.fields["preis"].decimal == ","


def test_a_price_in_another_currency_is_a_per_record_error():
    s = Schema.from_dict({"id": "id", "fields": {"id": {"kind": "keyword"},
                                                 "price": {"kind": "number", "unit": "USD"}}})
    assert s.extract({"id": "a", "price": "$3"})[0]["price"] == 3.0  # $ is USD
    values, problems = s.extract({"id": "b", "price": "€3"})
    assert values is None and problems[0][0] == "price" and "unit is USD" in problems[0][1]
    assert "expected a number" in s.extract({"id": "c", "price": "call us"})[1][0][1]


@pytest.mark.parametrize("column", ["Uniq Id", "uniq_id", "Sku", "SKU", "product_id", "Product ID", "asin",
                                    "item_id", "Code"])
def test_id_columns_are_found_by_their_usual_names(column):
    recs = [{"Product Name": f"thing {i}", column: f"X{i}", "Price": i} for i in range(5)]
    s = infer_schema(recs)
    assert s.fields[s.id_field].source in (column, None) and (s.fields[s.id_field].source or s.id_field) == column


def test_no_id_column_lists_every_column():
    columns = [f"column_{i:02d}" for i in range(28)]
    with pytest.raises(SchemaError) as e:
        infer_schema([{c: "x" for c in columns}])
    message = str(e.value)
    assert all(c in message for c in columns) and "28 fields" in message


def test_category_paths_become_hierarchies():
    recs = [{"uniq_id": f"u{i}", "name": f"product {i}", "category_tree": f'["Clothing >> Women >> Shorts{i % 3}"]'}
            for i in range(30)]
    s = infer_schema(recs)
    f = s.fields["category_tree"]
    assert f.kind == "keyword" and f.hierarchy == ">>"
    values, _ = s.extract(recs[0])
    assert values["category_tree"] == ["Clothing > Women > Shorts0"]
    zh = infer_schema([{"id": str(i), "类目": "美妆 | 护肤 | 面霜" if i % 2 else "美妆 | 彩妆"} for i in range(10)])
    assert zh.fields[zh.id_field].kind == "keyword" and any(g.hierarchy == "|" for g in zh.fields.values())


def test_unit_decimal_and_hierarchy_are_checked_and_round_trip():
    base = {"id": "id", "fields": {"id": {"kind": "keyword"}}}
    for spec, match in [({"kind": "text", "unit": "$"}, "unit"), ({"kind": "number", "decimal": ";"}, "decimal"),
                        ({"kind": "number", "hierarchy": ">"}, "hierarchy"),
                        ({"kind": "keyword", "hierarchy": ""}, "hierarchy")]:
        with pytest.raises(SchemaError, match=match):
            Schema.from_dict({**base, "fields": {**base["fields"], "x": spec}})
    with pytest.raises(ConfigError, match="catalog.decimal"):
        Schema.from_dict({**base, "catalog": {"decimal": "x"}})
    s = Schema.from_dict({**base, "fields": {**base["fields"], "p": {"kind": "number", "unit": "HK$", "decimal": ","},
                                             "c": {"kind": "keyword", "hierarchy": "|"}}})
    assert Schema.from_dict(tomllib.loads(to_toml(s))).to_dict() == s.to_dict()


@pytest.mark.parametrize("fields, message", [
    ({"all": {"kind": "text", "copy_from": ["all", "title"]}}, "fields.all.copy_from: 'all' copies itself"),
    ({"a": {"kind": "text", "copy_from": ["b"]}, "b": {"kind": "text", "copy_from": ["a"]}},
     r"fields.a.copy_from: 'b' is a copy field itself \(and it copies back from 'a'\)"),
    ({"a": {"kind": "text", "copy_from": ["title"]}, "b": {"kind": "text", "copy_from": ["a"]}},
     "fields.b.copy_from: 'a' is a copy field itself; copy from its sources instead: title"),
])
def test_copy_fields_copying_themselves_or_each_other_are_refused(fields, message):
    with pytest.raises(SchemaError, match=message):
        Schema.from_dict({**BASE, "fields": {**BASE["fields"], **fields}})


def test_integers_beyond_float_range_are_a_record_problem_naming_the_field():
    from souk.schema import OutOfRange, loads_json

    schema = Schema.from_dict({**BASE, "fields": {**BASE["fields"], "price": {"kind": "number"}}})
    big = "9" * 5000
    assert isinstance(loads_json(big), OutOfRange) and loads_json("9" * 308) == int("9" * 308)
    assert loads_json(str(2 ** 1024 - 1)) == 2 ** 1024 - 1 and isinstance(loads_json(str(2 ** 1024)), OutOfRange)
    assert isinstance(loads_json("-" + "9" * 310), OutOfRange) and loads_json("[1, -2]") == [1, -2]
    for record, field in ((f'{{"sku": "a", "price": {big}}}', "price"), (f'{{"sku": "a", "title": [{big}]}}', "title"),
                          (f'{{"sku": {big}}}', "sku"), (f'{{"sku": "a", "price": [1, {"9" * 400}]}}', "price")):
        values, problems = schema.extract(loads_json(record))
        assert values is None and problems[0][0] == field and "digits is beyond the range of numbers" in problems[0][1]
    values, problems = schema.extract(loads_json(f'{{"sku": "a", "unused": {big}, "price": 3}}'))
    assert values == {"sku": "a", "price": 3.0} and not problems


def test_souk_index_skips_a_record_with_a_huge_integer(tmp_path):
    from support import run_main

    catalog = tmp_path / "c.jsonl"
    catalog.write_text('{"sku": "a", "title": "ok"}\n{"sku": "b", "title": %s}\n{"sku": "c", "price": %s}\n'
                       % ("9" * 5000, "-" + "9" * 4301))
    schema = tmp_path / "s.toml"
    schema.write_text('id = "sku"\n[fields]\nsku = {kind = "keyword"}\ntitle = {kind = "text"}\nprice '
                      '= {kind = "number"}\n')
    out = run_main("index", str(catalog), "--index", str(tmp_path / "ix"), "--schema", str(schema), "--on-error",
                   "skip")
    assert out.returncode == 0 and "skipped line 2: title: an integer of 5000 digits" in out.stderr + out.stdout
    assert "skipped line 3: price: an integer of 4301 digits" in out.stderr + out.stdout
    failed = run_main("index", str(catalog), "--index", str(tmp_path / "ix2"), "--schema", str(schema), check=False)
    assert failed.returncode == 2 and "Traceback" not in failed.stderr and "line 2: title" in failed.stderr


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=200, deadline=None)
@given(digits=st.integers(1, 6000), negative=st.booleans(), field=st.sampled_from(["sku", "title", "price", "other"]),
       as_list=st.booleans())
def test_property_integers_of_any_size_in_any_field_are_a_value_or_a_problem(digits, negative, field, as_list):
    from souk.schema import loads_json

    schema = Schema.from_dict({**BASE, "fields": {**BASE["fields"], "price": {"kind": "number"}}})
    literal = ("-" if negative else "") + "8" * digits
    value = f"[{literal}]" if as_list else literal
    record = loads_json(f'{{"sku": "a", "title": "t", "{field}": {value}}}')
    values, problems = schema.extract(record)
    if field == "other" or digits <= 308:
        assert problems == [] and values is not None
    if digits > 309 and field != "other":
        assert values is None and problems[0][0] == field and f"{digits} digits" in problems[0][1]
