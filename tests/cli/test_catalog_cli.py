"""The `souk` CLI through its entry point in this process (`run_main`; tests/cli/test_main.py runs the real
subprocess): index, search, stats, delete, and every bad-input message."""
import json

import pytest

from support import FIXTURES, run_main


def last_json(proc):
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_index_search_stats_delete(tmp_path):
    ix = str(tmp_path / "ix")
    out = last_json(run_main("index", str(FIXTURES / "products.jsonl"), "--index", ix, "--json"))
    assert out["written"] == 12 and out["docs"] == 12 and out["rejected"] == 0

    res = last_json(run_main("search", "--index", ix, "milk", "--filter", "price<20", "--facet", "brand", "--json"))
    assert [h["id"] for h in res["hits"]] == ["A8"]
    assert res["facets"]["brand"]["buckets"] == [["Vitasoy", 1]]

    stats = last_json(run_main("stats", "--index", ix, "--json"))
    assert stats["docs"] == 12 and stats["bytes"] > 0 and {"name": "title", "kind": "text"} in stats["fields"]

    deleted = last_json(run_main("delete", "--index", ix, "A8", "A7", "nope", "--json"))
    assert deleted == {"requested": 3, "deleted": 2, "docs": 10}
    assert last_json(run_main("search", "--index", ix, "milk", "--json"))["total"] == 0


@pytest.mark.slow
def test_indexing_again_updates_by_id(tmp_path):
    ix = str(tmp_path / "ix")
    run_main("index", str(FIXTURES / "products.jsonl"), "--index", ix)
    update = tmp_path / "update.jsonl"
    update.write_text(json.dumps({"sku": "A7", "title": "Meiji Chocolate Milk", "brand": "Meiji", "category": "Dairy",
                                  "price": 8}) + "\n")
    run_main("index", str(update), "--index", ix)
    res = last_json(run_main("search", "--index", ix, "chocolate", "--json"))
    assert res["total"] == 1 and res["hits"][0]["doc"]["price"] == 8
    assert last_json(run_main("stats", "--index", ix, "--json"))["docs"] == 12


def test_bad_record_fails_whole_batch_with_line_and_field(tmp_path):
    cat = tmp_path / "bad.jsonl"
    cat.write_bytes(b'{"sku": "1", "title": "ok", "price": 3}\n{"sku": "2", "title": "x", "price": "cheap"}\n{"title": '
                    b'"no id", "price": 1}\n')
    proc = run_main("index", str(cat), "--index", str(tmp_path / "ix"), "--schema", str(_schema(tmp_path)), check=False)
    assert proc.returncode == 2
    assert "line 2: price: expected a number, got 'cheap'" in proc.stderr and "line 3: sku: missing id" in proc.stderr
    assert not (tmp_path / "ix").exists()  # a failed first run leaves no empty index behind

    ok = last_json(run_main("index", str(cat), "--index", str(tmp_path / "ix"), "--schema", str(_schema(tmp_path)),
                            "--on-error", "skip", "--json"))
    assert ok["written"] == 1 and ok["rejected"] == 2 and ok["rejects"][0]["line"] == 2


def _schema(tmp_path):
    p = tmp_path / "schema.toml"
    p.write_text('id = "sku"\n[fields.sku]\nkind = "keyword"\n[fields.title]\nkind = '
                 '"text"\n[fields.price]\nkind = "number"\n')
    return p


@pytest.mark.slow
def test_bad_inputs_give_clear_messages(tmp_path):
    ix = str(tmp_path / "ix")
    run_main("index", str(FIXTURES / "products.jsonl"), "--index", ix)
    cases = [
        (["search", "--index", ix, "x", "--filter", "colour=red"], "no filterable field 'colour'"),
        (["search", "--index", ix, "x", "--filter", "price<cheap"], "'cheap' is not a number"),
        (["search", "--index", str(tmp_path / "none"), "x"], "is not a souk index"),
        (["index", str(tmp_path / "missing.jsonl"), "--index", ix], "does not exist"),
        (["index", str(FIXTURES / "products.jsonl"), "--index", ix, "--on-error", "ignore"], "--on-error must be"),
        (["search", "--index", ix, "x", "--pipeline", "magic"], "unknown pipeline 'magic'"),
    ]
    bad_schema = tmp_path / "bad.toml"
    bad_schema.write_text('id = "sku"\n[fields.sku]\nkind = "keyword"\n[fields.title]\nkind = '
                          '"text"\nanalyzer = "nope"\n')
    cases.append((["index", str(FIXTURES / "products.jsonl"), "--index", str(tmp_path / "ix2"), "--schema",
                   str(bad_schema)],
                  "fields.title.analyzer: 'nope' is not one of"))
    for args, message in cases:
        proc = run_main(*args, check=False)
        assert proc.returncode == 2, (args, proc.stderr)
        assert message in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_beir_directory_keeps_beir_names(tmp_path):
    ix = str(tmp_path / "ix")
    run_main("index", str(FIXTURES / "beir-mini"), "--index", ix)
    res = last_json(run_main("search", "--index", ix, "coffee beans", "-k", "2", "--json"))
    assert res["hits"][0]["id"] == "d8" and set(res["hits"][0]["doc"]) == {"_id", "title", "text"}


@pytest.mark.slow
def test_demo_catalog_bilingual_searches(demo_index):
    ix = str(demo_index)
    assert last_json(run_main("stats", "--index", ix, "--json"))["docs"] == 2542
    cake = last_json(run_main("search", "--index", ix, "蛋糕", "--json"))
    assert cake["total"] > 5 and all("蛋糕" in (h["doc"].get("title_zh", "") + h["doc"].get("category_text_zh", ""))
                                     for h in cake["hits"][:5])
    trad = last_json(run_main("search", "--index", ix, "嘉頓", "--json"))  # traditional query, simplified field
    assert trad["total"] > 0 and all(h["doc"]["brand"] == ["Garden"] for h in trad["hits"])
    milk = last_json(run_main("search", "--index", ix, "milk", "--filter", "price<20", "--facet", "brand", "--json"))
    assert (
        milk["hits"] and all(h["doc"]["price"] < 20 for h in milk["hits"]) and milk["facets"]["brand"]["distinct"] > 1
    )
