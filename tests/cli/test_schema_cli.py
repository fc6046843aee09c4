"""`souk schema infer` and the schema-related parts of `souk index` (partial schemas, --columns, warnings)."""
import json
import tomllib

from souk.schema import Schema
from support import FIXTURES, run_main


def last_json(proc):
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_schema_infer_prints_toml_that_index_accepts(tmp_path):
    proc = run_main("schema", "infer", str(FIXTURES / "products.jsonl"))
    data = tomllib.loads(proc.stdout)
    assert data["id"] == "sku" and data["fields"]["price"] == {"kind": "number"}
    schema_file = tmp_path / "s.toml"
    schema_file.write_text(proc.stdout)
    assert Schema.load(schema_file).fields["brand"].kind == "keyword"
    out = last_json(run_main("index", str(FIXTURES / "products.jsonl"), "--index", str(tmp_path / "ix"),
                             "--schema", str(schema_file), "--json"))
    assert out["docs"] == 12 and out["warnings"] == []


def test_schema_infer_notes_guesses_and_names_headerless_columns(tmp_path):
    cat = tmp_path / "food.csv"
    cat.write_text("code,kcal\n" + "".join(f"P{i},{100 + i}\n" for i in range(30)) + "P99,NOTANUMBER\n")
    proc = run_main("schema", "infer", str(cat))
    assert "# note: field 'kcal': number, as 30 of 31 sampled values are numbers" in proc.stdout
    assert tomllib.loads(proc.stdout)["fields"]["kcal"]["kind"] == "number"
    bare = tmp_path / "bare.csv"
    bare.write_text("P1,2016-03-25,Shorts,379\nP2,2016-03-26,Sofa,32157\n")
    proc = run_main("schema", "infer", str(bare), "--columns", "sku,date,title,price", "--json")
    schema = last_json(proc)["schema"]
    assert schema["id"] == "sku" and schema["catalog"] == {"columns": ["sku", "date", "title", "price"]}
    assert schema["fields"]["price"]["kind"] == "number"


def test_index_with_columns_remembers_them(tmp_path):
    bare = tmp_path / "bare.csv"
    bare.write_text("P1,Shorts,379\nP2,Sofa,32157\n")
    proc = run_main("index", str(bare), "--index", str(tmp_path / "ix"), check=False)
    assert proc.returncode == 2 and "first row looks like data" in proc.stderr
    assert not (tmp_path / "ix").exists()
    assert last_json(run_main("index", str(bare), "--index", str(tmp_path / "ix"), "--columns", "sku,title,price",
                              "--json"))["docs"] == 2
    more = tmp_path / "more.csv"
    more.write_text("P3,Lamp,20\n")
    assert last_json(run_main("index", str(more), "--index", str(tmp_path / "ix"), "--json"))["docs"] == 3


def test_schema_with_only_an_id_merges_with_inference_and_says_what_merged(tmp_path):
    cat = tmp_path / "off.jsonl"
    names = ["Oat milk", "Cola", "Oat milk ", "Chips"]  # equal after trimming: two records, one document
    cat.write_text("".join(json.dumps({"product_name": n, "kcal": i}) + "\n" for i, n in enumerate(names)))
    schema = tmp_path / "s.toml"
    schema.write_text('id = "product_name"\n')
    proc = run_main("index", str(cat), "--index", str(tmp_path / "ix"), "--schema", str(schema), "--json")
    out = last_json(proc)
    assert out["written"] == 4 and out["docs"] == 3
    assert out["warnings"] == ["1 of 4 records had the id of an earlier record of this catalog and replaced it "
                               "(id field 'product_name'; ids are compared after trimming and NFKC normalization)"]
    assert "warning: 1 of 4 records had the id" in proc.stderr


def test_declared_field_empty_in_every_record_is_a_warning(tmp_path):
    schema = tmp_path / "s.toml"
    schema.write_text('id = "sku"\n[fields.sku]\nkind = "keyword"\n[fields.nme]\nkind = '
                      '"text"\n[fields.title]\nkind = "text"\n')
    proc = run_main("index", str(FIXTURES / "products.jsonl"), "--index", str(tmp_path / "ix"), "--schema", str(schema),
                    "--json")
    assert last_json(proc)["warnings"] == ["declared field nme was empty in every record (its source 'nme' was never "
                                           "found); check the field name or its `from` path"]
