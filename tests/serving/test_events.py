"""The traffic routes in-process: search ids, sessions, POST /events, keys, interleaving, experiments, analytics."""
from __future__ import annotations

import shutil

import pytest
from fastapi.testclient import TestClient

from souk.errors import ConfigError
from souk.events.log import EventLog
from souk.serving.app import create_app
from souk.serving.auth import Keys
from souk.serving.events import Experiment, Exploration

ADMIN, SEARCH = "a" * 20, "s" * 20


@pytest.fixture
def own_index(demo_index, tmp_path):
    path = tmp_path / "index"
    shutil.copytree(demo_index, path, ignore=shutil.ignore_patterns("events"))
    return path


def test_searches_carry_ids_and_clicks_are_logged_durably(own_index):
    client = TestClient(create_app(own_index))
    got = client.get("/search", params={"q": "milk", "session": "shopper-1", "size": 5}).json()
    posted = client.post("/search", json={"q": "chocolate", "page": 2, "size": 3}).json()
    assert isinstance(got["search_id"], str) and got["search_id"] != posted["search_id"]
    one = {"search_id": got["search_id"], "type": "click", "id": got["hits"][1]["id"], "position": 2}
    assert client.post("/events", json=one).status_code == 202
    many = [{"search_id": posted["search_id"], "type": t, "id": posted["hits"][0]["id"]}
            for t in ("click", "cart", "purchase")]
    assert client.post("/events", json=many).json() == {"accepted": 3}
    records = list(EventLog(own_index).read())
    searches = {r["search_id"]: r for r in records if r["kind"] == "search"}
    milk = searches[got["search_id"]]
    assert (
        milk["session"] == "shopper-1" and milk["query"] == "milk" and milk["shown"] == [h["id"] for h in got["hits"]]
    )
    assert searches[posted["search_id"]]["offset"] == 3 and "warm up" not in {s["query"] for s in searches.values()}
    assert [r["kind"] for r in records if r["kind"] != "search"] == ["click", "click", "cart", "purchase"]


def test_bad_events_get_a_4xx_naming_the_problem_and_nothing_is_logged(own_index):
    client = TestClient(create_app(own_index))
    sid = client.get("/search", params={"q": "milk"}).json()["search_id"]
    cases = [([{"search_id": "0" * 20, "type": "click", "id": "x"}], "unknown search id"),
             ({"search_id": sid, "type": "view", "id": "x"}, "unknown event type 'view'"),
             ([], "non-empty array"), ([{"search_id": sid, "type": "click"}], ".id")]
    for body, words in cases:
        r = client.post("/events", json=body)
        assert 400 <= r.status_code < 500 and words in r.json()["error"], (body, r.json())
    bad_json = client.post("/events", content=b"{not json", headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400 and "not valid JSON" in bad_json.json()["error"]
    assert [r["kind"] for r in EventLog(own_index).read()] == ["search"]


def test_search_key_may_send_events_but_only_the_admin_key_reads_experiments_and_analytics(own_index):
    client = TestClient(create_app(own_index, Keys(ADMIN, SEARCH)))
    as_search = {"Authorization": f"Bearer {SEARCH}"}
    as_admin = {"Authorization": f"Bearer {ADMIN}"}
    res = client.get("/search", params={"q": "milk"}, headers=as_search).json()
    event = {"search_id": res["search_id"], "type": "click", "id": res["hits"][0]["id"], "position": 1}
    assert client.post("/events", json=event).status_code == 401
    assert client.post("/events", json=event, headers=as_search).status_code == 202
    for path in ("/experiments", "/analytics/data"):
        assert client.get(path, headers=as_search).status_code == 403
        assert client.get(path, headers=as_admin).status_code == 200
    data = client.get("/analytics/data", headers=as_admin).json()
    assert data["searches"] == 1 and data["top_queries"][0] == {"query": "milk", "searches": 1, "ctr": 1.0}
    assert data["plots"]["ctr_by_position"].startswith("<svg")


def test_interleaving_applies_to_searches_naming_no_pipeline_and_credits_clicks(own_index):
    client = TestClient(create_app(own_index, experiment=Experiment("keyword", "bm25", seed=3)))
    named = client.get("/search", params={"q": "milk", "pipeline": "keyword"}).json()
    assert named["pipeline"] == "keyword"
    wins = {"a": 0, "b": 0, "ab": 0}  # ab: both pipelines' common first results, credited to neither
    for i in range(30):
        res = client.get("/search", params={"q": "chocolate", "size": 4}).json()
        assert res["pipeline"] == "interleave:keyword,bm25" and len(res["hits"]) == 4
        client.post("/events", json={"search_id": res["search_id"], "type": "click", "id": res["hits"][0]["id"]})
    searches = [r for r in EventLog(own_index).read() if r["kind"] == "search"]
    assert "interleave" not in searches[0] and all(len(s["teams"]) == 4 for s in searches[1:])
    for s in searches[1:]:
        wins[s["teams"][0]] += 1
    report = client.get("/experiments").json()
    tally = (report["searches"], report["wins_a"], report["wins_b"], report["ties"])
    assert tally == (30, wins["a"], wins["b"], wins["ab"])
    assert report["experiment"] == "keyword,bm25" and 0 <= report["p_value"] <= 1


def test_exploration_moves_one_document_from_below_the_page_onto_it_and_logs_it(own_index):
    client = TestClient(create_app(own_index, exploration=Exploration(1.0, seed=5)))
    plain = client.get("/search", params={"q": "chocolate", "size": 8, "pipeline": "keyword"}).json()
    order = [h["id"] for h in plain["hits"]]
    assert len(order) == 8  # the demo has enough chocolate for a page of 4 and 4 more below it
    places = set()
    for _ in range(20):
        res = client.get("/search", params={"q": "chocolate", "size": 4}).json()
        shown = [h["id"] for h in res["hits"]]
        assert res["pipeline"] == "explore:keyword" and len(shown) == 4
        newcomer = [d for d in shown if d not in order[:4]]
        assert len(newcomer) == 1 and newcomer[0] in order[4:]
        assert [d for d in shown if d != newcomer[0]] == order[:3]  # the rest keep their order, the last drops off
        places.add(shown.index(newcomer[0]) + 1)
    searches = [r for r in EventLog(own_index).read() if r["kind"] == "search" and r.get("explore")]
    assert len(searches) == 20 and all(s["explore"]["to"] == s["shown"].index(s["explore"]["id"]) + 1 for s in searches)
    assert len(places) > 1  # the newcomer is shown at random places
    by_price = client.get("/search", params={"q": "chocolate", "size": 4, "sort": "price",
                                             "pipeline": "keyword"}).json()
    explored = client.get("/search", params={"q": "chocolate", "size": 4, "sort": "price"}).json()
    assert explored["pipeline"] == "explore:keyword" and explored["hits"] == by_price["hits"]  # sorted: not moved


def test_exploration_share_must_be_a_share():
    assert Exploration.parse(0) is None
    with pytest.raises(ConfigError, match="--explore"):
        Exploration(1.5)
