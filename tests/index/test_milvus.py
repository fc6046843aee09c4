"""The Milvus vector backend against a real Milvus Lite file: commits mirrored, filters pushed down,
versions never mixed, rebuild and move; and the expression builder on its own."""
import json
import subprocess
import sys

import numpy as np
import pytest

from souk.errors import ConfigError, IndexStateError, QueryError
from souk.index.filters import parse_filter
from souk.index.vectors.milvus import check_params, filter_expression, mirrored_fields
from souk.schema import Schema
from support import REPO

SCHEMA = {"id": "sku", "fields": {
    "sku": {"kind": "keyword"}, "title": {"kind": "text"}, "brand": {"kind": "keyword"},
    "price": {"kind": "number"}, "colour": {"kind": "keyword"}}}
BRANDS = ["Acme", "Garden", 'Q"uote\\s', "嘉頓"]


def schema() -> Schema:
    return Schema.from_dict(SCHEMA)


# ---- expressions (no Milvus needed) --------------------------------------------------------
def expr(*filters: str) -> str:
    s = schema()
    params = {"mirror": None}
    return filter_expression([parse_filter(f, s) for f in filters], s, mirrored_fields(s, params))


def test_keyword_values_are_escaped_and_lower_cased():
    assert expr('brand=GARDEN|Q"uote\\s') == r'(array_contains_any(f_brand, ["garden", "q\"uote\\s"]))'
    from souk.analysis.normalize import normalize_keyword

    assert expr("brand=嘉頓\n") == f'(array_contains_any(f_brand, ["{normalize_keyword("嘉頓").lower()}"]))'


def test_numbers_ranges_and_negation():
    assert expr("price<20", "price>=1e3") == "(f_price < 20.0) and (f_price >= 1000.0)"
    assert expr("price=5..20|30") == "((f_price >= 5.0 and f_price <= 20.0) or f_price == 30.0)"
    assert expr("price=5..") == "((f_price >= 5.0))"
    assert expr("brand!=Acme") == '(f_brand is null or not (array_contains_any(f_brand, ["acme"])))'


def test_mirrored_fields_default_to_stored_keywords_and_numbers_but_the_id():
    assert mirrored_fields(schema(), {"mirror": None}) == {"brand": "f_brand", "price": "f_price", "colour": "f_colour"}


def test_an_unmirrored_field_is_refused_with_the_fix():
    s = schema()
    with pytest.raises(QueryError, match="mirror"):
        filter_expression([parse_filter("price<3", s)], s, mirrored_fields(s, {"mirror": ["brand"]}))
    with pytest.raises(ConfigError, match="title"):
        mirrored_fields(s, {"mirror": ["title"]})


@pytest.mark.parametrize("change, message", [
    ({"uri": ""}, "uri"), ({"uri": "/tmp/x.sqlite"}, ".db"), ({"uri": "http://user:pw@host:19530"}, "credentials"),
    ({"uri": "ftp://host"}, "http"), ({"collection": "1abc"}, "collection"), ({"collection": "a-b"}, "collection"),
    ({"mirror": "brand"}, "mirror"), ({"milvus_index": "DISKANN2"}, "milvus_index"),
    ({"transform": "pca:8"}, "transform"),
])
def test_bad_params_are_named(change, message):
    params = {"uri": "x.db", "collection": "c", "mirror": None, "milvus_index": "AUTOINDEX", "transform": "none",
              **change}
    with pytest.raises(ConfigError, match=message):
        check_params(params, "fields.embedding.params")


def test_a_local_file_is_pinned_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = {"uri": "v.db", "collection": "c", "mirror": None, "milvus_index": "AUTOINDEX", "transform": "none"}
    assert check_params(params, "w")["uri"] == str(tmp_path / "v.db")


def test_a_missing_extra_is_named(monkeypatch):
    from souk.index.vectors import milvus, ray_encoding

    monkeypatch.setitem(sys.modules, "pymilvus", None)  # what an environment without the extra looks like
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setattr(milvus, "_CLIENTS", {})
    with pytest.raises(ConfigError, match=r"souk\[milvus\]"):
        milvus.client("/nowhere/x.db")
    with pytest.raises(ConfigError, match=r"souk\[ray\]"):
        with ray_encoding.ray_cluster("auto"):
            pass


@pytest.mark.slow
def test_a_keyword_search_never_imports_pymilvus_or_ray(demo_index):
    code = ("import sys; from souk.engine import Engine; e = Engine.open(sys.argv[1]); e.search('milk', "
            "filters=['price<20']);"
            "bad = [m for m in ('pymilvus', 'milvus_lite', 'ray') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code, str(demo_index)], check=True, cwd=REPO)


# ---- against Milvus Lite -------------------------------------------------------------------
def _installed(*names: str) -> bool:
    import importlib.util

    return all(importlib.util.find_spec(n) is not None for n in names)


pytestmark_milvus = pytest.mark.skipif(not _installed("pymilvus", "milvus_lite"), reason="needs the milvus extra")


def products(n: int) -> list[dict]:
    words = ["chocolate biscuit", "green tea", "instant noodles", "milk powder", "soy sauce"]
    return [{"sku": f"s{i}", "title": f"{words[i % 5]} {i}", "brand": [BRANDS[i % 4]]
             + (["Acme"] if i % 7 == 0 else []),
             "price": float(i % 23)} | ({"colour": "Red"} if i % 3 == 0 else {}) for i in range(n)]


def make_index(tmp_path, model, docs, backend="milvus"):
    from souk.catalogs import read_catalog
    from souk.index import Index

    data = dict(SCHEMA)
    data["fields"] = {**SCHEMA["fields"], "embedding": {"kind": "vector", "params": {
        "source": ["title"], "model": str(model), "backend": "torch-fp32", "index": backend,
        **({"uri": str(tmp_path / "m.db"), "collection": "shop"} if backend == "milvus" else {})}}}
    cat = tmp_path / "cat.jsonl"
    cat.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    index = Index.create(tmp_path / "index", Schema.from_dict(data))
    with index.writer() as w:
        w.add(read_catalog(cat))
        w.commit()
    return index


def dense(index, text, k, filters=()):
    from souk.query.plan import QueryPlan
    from souk.retrieval.base import RETRIEVERS

    searcher = index.searcher()
    plan = QueryPlan(original=text, text=text, filters=[parse_filter(f, index.schema) for f in filters])
    return RETRIEVERS.get("milvus")(searcher, {}).retrieve([plan], k)[0]


@pytest.fixture(scope="module")
def shop(tmp_path_factory, tiny_encoder):
    return make_index(tmp_path_factory.mktemp("milvus"), tiny_encoder, products(120))


@pytest.mark.slow
@pytestmark_milvus
def test_filtered_search_returns_only_matches_and_k_of_them(shop):
    docs = {d["sku"]: d for d in products(120)}
    cases = [(["brand=acme"], lambda d: "Acme" in d["brand"]),
             (["brand=GARDEN|嘉頓", "price<10"], lambda d: bool({"Garden", "嘉頓"} & set(d["brand"]))
              and d["price"] < 10),
             (['brand=Q"uote\\s', "price=3..12"], lambda d: 'Q"uote\\s' in d["brand"] and 3 <= d["price"] <= 12),
             (["brand!=Acme", "colour=red"], lambda d: "Acme" not in d["brand"] and d.get("colour") == "Red"),
             (["price=5|7"], lambda d: d["price"] in (5.0, 7.0))]
    for filters, ok in cases:
        matching = {s for s, d in docs.items() if ok(d)}
        for k in (3, 10, len(matching) + 5):
            got = dense(shop, "tea", k, filters)
            assert set(got.ids) <= matching, filters
            assert len(got.ids) == min(k, len(matching)), (filters, k, len(matching))
            assert list(got.scores) == sorted(got.scores, reverse=True)


@pytest.mark.slow
@pytestmark_milvus
def test_same_ranking_as_faiss_flat(tmp_path, tiny_encoder, shop):
    from souk.retrieval.base import RETRIEVERS
    from souk.query.plan import QueryPlan

    flat = make_index(tmp_path, tiny_encoder, products(120), backend="flat")
    for text in ("green tea", "milk", "醬油 noodles"):
        plan = QueryPlan(original=text, text=text)
        a = RETRIEVERS.get("dense")(flat.searcher(), {}).retrieve([plan], 10)[0]
        b = dense(shop, text, 10)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)  # ties (near-equal titles) may swap places
        clear = a.scores > a.scores[-1] + 1e-3
        assert set(np.asarray(a.ids)[clear]) == set(np.asarray(b.ids)[b.scores > a.scores[-1] + 1e-3])


@pytest.mark.slow
@pytestmark_milvus
def test_writes_and_deletes_follow_commits_and_versions_never_mix(tmp_path, tiny_encoder):
    from souk.catalogs import Record
    from souk.index.vectors.milvus import client, rebuild, status

    index = make_index(tmp_path, tiny_encoder, products(30))
    new = {"sku": "fresh", "title": "green tea 99", "brand": ["Zed"], "price": 99.0}
    with index.writer() as w:
        w.add([Record(1, new)])
        w.delete(["s1", "s2"])
        before = index.searcher()
        assert dense(index, "green tea", 40, ["brand=zed"]).ids == []  # not before the commit
        w.commit()
    assert dense(index, "green tea", 40, ["brand=zed"]).ids == ["fresh"]
    everything = dense(index, "tea", 100).ids
    assert "s1" not in everything and "s2" not in everything and len(everything) == 29
    assert status(index.path)["in_step"] and status(index.path)["rows"] == 29
    with pytest.raises(IndexStateError, match="commit"):  # an older snapshot never reads the newer collection
        from souk.retrieval.base import RETRIEVERS
        RETRIEVERS.get("milvus")(before, {})
    cl = client(str(tmp_path / "m.db"))
    cl.delete("shop", ids=[int(k) for k in __import__("souk.index.keys", fromlist=["doc_keys"]).doc_keys(["s3"])])
    cl.alter_collection_properties("shop", properties={"souk.commit": "drifted"})
    with pytest.raises(IndexStateError, match="souk vectors rebuild"):
        dense(index, "tea", 5)
    assert rebuild(index.path)["vectors"] == 29
    assert "s3" in dense(index, "tea", 100).ids


@pytest.mark.slow
@pytestmark_milvus
def test_index_command_and_move_put_vectors_on_milvus(tmp_path, tiny_encoder):
    from support import run_souk

    cat = tmp_path / "cat.jsonl"
    cat.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in products(40)), encoding="utf-8")
    schema_file = tmp_path / "s.toml"
    schema_file.write_text('id = "sku"\n[fields.sku]\nkind = "keyword"\n[fields.title]\nkind = "text"\n'
                           '[fields.brand]\nkind = "keyword"\n[fields.price]\nkind = "number"\n')
    out = run_souk("index", str(cat), "--index", str(tmp_path / "ix"), "--schema", str(schema_file), "--vectors",
                   "--vector-backend", "milvus", "--vector-uri", str(tmp_path / "cli.db"), "--json")
    assert json.loads(out.stdout.splitlines()[-1])["docs"] == 40
    st = json.loads(run_souk("vectors", "status", "--index", str(tmp_path / "ix"), "--json").stdout.splitlines()[-1])
    assert st["in_step"] and st["rows"] == 40 and st["mirrored"] == ["brand", "price"]
    hits = json.loads(run_souk("search", "--index", str(tmp_path / "ix"), "tea", "--pipeline", "dense",
                               "--filter", "brand=garden", "-k", "5", "--json").stdout.splitlines()[-1])["hits"]
    assert len(hits) == 5 and all("Garden" in h["doc"]["brand"] for h in hits)
    moved = json.loads(run_souk("vectors", "move", "--index", str(tmp_path / "ix"), "--backend", "flat",
                                "--json").stdout.splitlines()[-1])
    assert moved["to"] == "flat"
    again = json.loads(run_souk("search", "--index", str(tmp_path / "ix"), "tea", "--pipeline", "dense",
                                "--filter", "brand=garden", "-k", "5", "--json").stdout.splitlines()[-1])["hits"]
    assert [h["id"] for h in again] == [h["id"] for h in hits]
