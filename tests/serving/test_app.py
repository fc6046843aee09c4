"""The HTTP API in-process: search, documents, keys, limits, metrics; bad input is never a 500."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from souk.serving.auth import Keys
from support import FUZZ_SCALE


def test_search_get_and_post_agree_and_carry_facets(client):
    got = client.get("/search", params={"q": "chocolate", "facet": ["brand"], "size": 3}).json()
    posted = client.post("/search", json={"q": "chocolate", "facets": ["brand"], "size": 3}).json()
    assert [h["id"] for h in got["hits"]] == [h["id"] for h in posted["hits"]]
    assert got["total"] > 3 and len(got["hits"]) == 3
    assert sum(c for _, c in got["facets"]["brand"]["buckets"]) + got["facets"]["brand"]["other"] <= got["total"]
    assert "chocolate" in json.dumps(got["hits"][0]["highlights"]).lower()


def test_filters_sort_pages_and_explain(client):
    first = client.get("/search", params={"q": "milk", "filter": "price<20", "sort": "price", "size": 5}).json()
    second = client.get("/search", params={"q": "milk", "filter": "price<20", "sort": "price", "size": 5,
                                           "page": 2}).json()
    prices = [h["doc"]["price"] for h in first["hits"] + second["hits"]]
    assert prices == sorted(prices) and max(prices) < 20
    assert not {h["id"] for h in first["hits"]} & {h["id"] for h in second["hits"]}
    explained = client.get("/search", params={"q": "milk", "explain": True, "size": 2}).json()
    assert explained["plan"]["original"] == "milk" and explained["hits"][0]["explain"]["recall"]["rank"] == 1


def test_collapse_shows_each_value_once(client):
    res = client.get("/search", params={"q": "chocolate", "collapse": "brand", "size": 10}).json()
    brands = [tuple(h["doc"]["brand"]) for h in res["hits"]]
    assert len(brands) == len(set(brands)) and any(h["collapsed"] > 0 for h in res["hits"])
    assert all("<mark>" in " ".join(h["highlights"].values()) for h in res["hits"])


def test_collapse_fills_the_page_and_limits_its_depth(client):
    """A page of collapsed hits is full while the matches hold enough distinct values (the window widens),
    and paging past what collapsing can reach is a 400 naming the limit."""
    everything = client.get("/search", params={"q": "", "collapse": "supermarket", "size": 5}).json()
    assert len({tuple(h["doc"]["supermarket"]) for h in everything["hits"]}) == len(everything["hits"]) == 5
    deep = client.get("/search", params={"q": "", "collapse": "brand", "size": 100, "page": 3})
    assert deep.status_code == 400 and "first 250 collapsed hits" in deep.json()["error"]


def test_writes_are_searchable_from_the_next_request_and_deletable(client):
    doc = {"code": "ZZ1", "name": {"en": "Quokka Crunch Bar 40g", "zh-Hans": "短尾矮袋鼠脆条"},
           "prices": [{"price": 3.5}]}
    ack = client.post("/documents", json=[doc])
    assert ack.status_code == 200 and ack.json()["written"] == 1
    assert [h["id"] for h in client.get("/search", params={"q": "quokka"}).json()["hits"]] == ["ZZ1"]
    assert client.delete("/documents/ZZ1").json()["deleted"] == 1
    assert client.get("/search", params={"q": "quokka"}).json()["total"] == 0


def test_a_bad_batch_is_rejected_whole_with_record_numbers(client):
    before = client.get("/health").json()["docs"]
    bad = [{"code": "ok1", "name": {"en": "fine"}}, {"name": {"en": "no id"}}]
    res = client.post("/documents", json=bad)
    assert res.status_code == 422 and res.json()["problems"][0]["record"] == 2
    assert client.get("/health").json()["docs"] == before
    skipped = client.post("/documents", params={"on_error": "skip"}, json=bad).json()
    assert skipped["written"] == 1 and skipped["rejected"][0]["record"] == 2
    ndjson = client.post("/documents", content=b'{"code": "ok2", "name": {"en": "x"}}\n{bad\n',
                         headers={"Content-Type": "application/x-ndjson"})
    assert ndjson.status_code == 400 and "line 2" in ndjson.json()["error"]


@pytest.mark.parametrize("params, status, words", [
    ({"size": 101}, 422, "size"), ({"page": 0}, 422, "page"), ({"q": "x" * 1001}, 422, "q"),
    ({"page": 9000, "size": 100}, 400, "offset + k"), ({"filter": "price<nan"}, 400, "price"),
    ({"sort": "title_en"}, 400, "title_en"), ({"pipeline": "nope"}, 400, "unknown pipeline"),
    ({"collapse": "nope"}, 400, "collapse"),
])
def test_limits_and_bad_arguments_are_4xx_with_a_message(client, params, status, words):
    res = client.get("/search", params=params)
    assert res.status_code == status and words in res.json()["error"], res.json()


def test_body_limits_and_malformed_json(client):
    assert client.post("/search", content=b"{bad", headers={"Content-Type": "application/json"}).status_code == 422
    assert client.post("/documents", content=b"{bad", headers={"Content-Type": "application/json"}).status_code == 400
    assert client.post("/documents", content=b"{bad").status_code == 415  # no content type: not JSON
    assert client.post("/documents", json={"code": "a"}).status_code == 400
    huge = client.post("/documents", content=b"[]",
                       headers={"Content-Length": str(64 * 1024 * 1024), "Content-Type": "application/json"})
    assert huge.status_code == 413


def test_health_metrics_and_docs(client):
    client.get("/search", params={"q": "tea"})
    text = client.get("/metrics").text
    assert 'souk_requests_total{method="GET",route="/search",status="200"}' in text
    assert "souk_request_seconds_bucket" in text and "souk_docs " in text
    assert client.get("/health").json()["status"] == "ok"
    assert "/search" in client.get("/openapi.json").json()["paths"]


def test_keys_gate_reads_and_writes(served_index):
    from fastapi.testclient import TestClient

    from souk.serving.app import create_app

    keys = Keys(admin="a" * 20, search="s" * 20)
    c = TestClient(create_app(served_index, keys))
    assert c.get("/search", params={"q": "tea"}).status_code == 401
    assert c.get("/search", params={"q": "tea"},
                 headers={"Authorization": "Bearer wrongwrongwrongwrong"}).status_code == 401
    assert c.get("/search", params={"q": "tea"}, headers={"Authorization": "Bearer " + "s" * 20}).status_code == 200
    assert c.post("/documents", json=[], headers={"Authorization": "Bearer " + "s" * 20}).status_code == 403
    assert c.post("/documents", json=[], headers={"Authorization": "Bearer " + "a" * 20}).status_code == 200
    assert c.get("/health").status_code == 200


def test_short_or_lonely_keys_are_refused():
    from souk.errors import ConfigError

    with pytest.raises(ConfigError, match="too short"):
        Keys(admin="abc").check()
    with pytest.raises(ConfigError, match="without SOUK_ADMIN_KEY"):
        Keys(search="s" * 20).check()


FUZZ = {"cases": 0}
text = st.text(max_size=40)


@pytest.mark.slow
@settings(max_examples=150 * FUZZ_SCALE, deadline=None, suppress_health_check=list(HealthCheck))
@given(q=text, filters=st.lists(text, max_size=3), facets=st.lists(text, max_size=2), sort=st.none() | text,
       page=st.integers(-5, 20_000), size=st.integers(-5, 200), pipeline=st.sampled_from(["keyword", "bm25", "x", ""]),
       collapse=st.none() | text)
def test_fuzzed_search_requests_never_fail_the_server(client, q, filters, facets, sort, page, size, pipeline, collapse):
    params = {"q": q, "filter": filters, "facet": facets, "page": page, "size": size, "pipeline": pipeline}
    params.update({k: v for k, v in (("sort", sort), ("collapse", collapse)) if v is not None})
    res = client.get("/search", params=params)
    FUZZ["cases"] += 1
    assert res.status_code in (200, 400, 422), (params, res.text)
    assert "error" in res.json() or "hits" in res.json()


@settings(max_examples=60 * FUZZ_SCALE, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    body=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
        max_leaves=12,
    )
)
def test_fuzzed_document_batches_never_fail_the_server(client, body):
    res = client.post("/documents", params={"on_error": "skip"}, content=json.dumps(body).encode(),
                      headers={"Content-Type": "application/json"})
    assert res.status_code in (200, 400, 422), res.text


def test_suggest_completes_english_and_pinyin_prefixes(client):
    english = client.get("/suggest", params={"q": "choc"}).json()["suggestions"]
    assert english and all("choc" in s["text"].lower() for s in english[:3])
    assert any("苹果" in s["text"] for s in client.get("/suggest", params={"q": "pingg"}).json()["suggestions"])
    assert client.get("/suggest", params={"q": "x" * 201}).status_code == 422
