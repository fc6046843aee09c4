"""Simulated shoppers: page 1 only by default; with `next_page`, shoppers who clicked nothing open page 2.

The server is a small HTTP fake at the seam (the shoppers only speak HTTP); `tests/cli/test_events_cli.py` drives
a real `souk serve`."""
from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from souk.bench.traffic import Shoppers, expected_interleaving, simulate
from souk.errors import ConfigError
from souk.evaluation.datasets import Dataset


class Shop(BaseHTTPRequestHandler):
    """20 results a query, 10 a page; answers searches like `GET /search` and takes events like `POST /events`."""

    searches: list[dict] = []
    events: list[dict] = []

    def log_message(self, *args):
        pass

    def answer(self, status, body):
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self):
        params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
        page, size = int(params.get("page", 1)), int(params["size"])
        self.searches.append(params)
        offset = (page - 1) * size
        hits = [{"id": f"d{offset + i + 1}"} for i in range(size)]
        self.answer(200, {"search_id": f"s{len(self.searches)}", "offset": offset, "hits": hits})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.events.extend(body)
        self.answer(202, {"accepted": len(body)})


@pytest.fixture
def shop():
    Shop.searches, Shop.events = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Shop)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def data():
    # the only relevant result is the 11th: page 1 gets no click (noise 0), page 2's top is clicked when examined
    return Dataset.from_parts({"q1": "drill"}, {"q1": {"d11": 3}}, name="shop", split="train")


def test_shoppers_stay_on_page_one_by_default(shop):
    result = simulate(shop, data(), 50, seed=1, shoppers=Shoppers(noise=0.0), progress=False)
    assert len(Shop.searches) == 50 and all("page" not in s for s in Shop.searches)
    assert result["clicks"] == 0 and result["shoppers"]["next_page"] == 0.0


def test_shoppers_who_find_nothing_open_page_two_and_click_at_its_positions(shop):
    result = simulate(shop, data(), 40, seed=1, shoppers=Shoppers(noise=0.0, next_page=0.5), progress=False)
    turned = [s for s in Shop.searches if s.get("page") == "2"]
    assert len(Shop.searches) == 40 + len(turned) and 8 < len(turned) < 32
    assert {s["session"] for s in turned} <= {s["session"] for s in Shop.searches if "page" not in s}
    # page 2's top is examined like page 1's: the grade-3 result (the top grade) is clicked every time it is shown
    assert result["clicks"] == len(turned) == result["clicked_searches"]
    assert {e["id"] for e in Shop.events} == {"d11"} and {e["position"] for e in Shop.events} == {11}


def test_a_shopper_who_clicked_on_page_one_does_not_turn_the_page(shop):
    clicked = Dataset.from_parts({"q1": "drill"}, {"q1": {"d1": 3}}, name="shop", split="train")
    simulate(shop, clicked, 30, seed=2, shoppers=Shoppers(noise=0.0, next_page=1.0), progress=False)
    assert all(s.get("page") != "2" for s in Shop.searches)


def test_next_page_must_be_a_probability():
    with pytest.raises(ConfigError, match="--next-page"):
        Shoppers(next_page=1.5)


def test_a_page_of_twelve_shows_the_eleventh_result_on_page_one(shop):
    # the grade-3 result at 11 is on page 1 of a 12-result grid: clicked there when examined, no page 2 needed
    result = simulate(shop, data(), 40, seed=1, shoppers=Shoppers(noise=0.0, size=12, next_page=1.0), progress=False)
    assert {s["size"] for s in Shop.searches} == {"12"}
    assert {e["position"] for e in Shop.events} == {11} and {e["id"] for e in Shop.events} == {"d11"}
    assert 0 < result["clicks"] < 40 and result["shoppers"]["size"] == 12
    # every shopper who missed it turns to page 2 (next_page 1), whose results start at 13
    assert len([s for s in Shop.searches if s.get("page") == "2"]) == 40 - result["clicks"]
    for size in (0, 101):
        with pytest.raises(ConfigError, match="--page-size"):
            Shoppers(size=size)


def many():
    # ten queries, the top result of each is the top grade: a shopper clicks it exactly when it examines position 1
    queries = {f"q{i}": f"drill {i}" for i in range(10)}
    return Dataset.from_parts(queries, {q: {"d1": 3} for q in queries}, name="shop", split="train")


def sessions():
    out: dict[str, list[dict]] = {}
    for s in Shop.searches:
        out.setdefault(s["session"], []).append(s)
    return out


def test_a_shopper_makes_several_searches_in_one_session_and_one_ab_arm(shop):
    result = simulate(shop, many(), 60, seed=3, shoppers=Shoppers(per_shopper=3), progress=False, ab=("a", "b"))
    groups = sessions()
    assert len(groups) == 20 and all(len(g) == 3 for g in groups.values())
    arms = [{s["pipeline"] for s in g} for g in groups.values()]
    assert all(len(a) == 1 for a in arms) and {a.pop() for a in arms} == {"a", "b"}  # per shopper, both arms used
    assert result["shoppers"]["per_shopper"] == 3


def test_engagement_is_drawn_once_a_shopper(shop):
    # Beta(0.05, 0.05): a shopper examines (and so clicks) nearly always or nearly never, the same in each search
    simulate(shop, many(), 300, seed=4, shoppers=Shoppers(noise=0.0, per_shopper=3, engagement=(0.05, 0.05)),
             progress=False)
    clicked = {e["search_id"] for e in Shop.events}
    ids = {id(s): f"s{n + 1}" for n, s in enumerate(Shop.searches)}
    mixed = [g for g in sessions().values() if len({ids[id(s)] in clicked for s in g}) > 1]
    assert 0.25 < len(clicked) / 300 < 0.75
    assert len(mixed) < 0.15 * 100  # drawn a search, about 3 of 4 shoppers would both click and not


def test_one_seed_meets_the_same_shoppers_with_or_without_ab(shop):
    shoppers = Shoppers(per_shopper=2, engagement=(1.0, 1.0))
    simulate(shop, many(), 40, seed=5, shoppers=shoppers, progress=False)
    first = [(s["q"], s["session"]) for s in Shop.searches]
    Shop.searches.clear()
    simulate(shop, many(), 40, seed=5, shoppers=shoppers, progress=False, ab=("a", "b"))
    assert [(s["q"], s["session"]) for s in Shop.searches] == first


def test_shoppers_need_a_search_and_a_beta():
    with pytest.raises(ConfigError, match="--per-shopper"):
        Shoppers(per_shopper=0)
    with pytest.raises(ConfigError, match="--engagement"):
        Shoppers(engagement=(0.0, 1.0))


def test_the_expected_interleaved_outcome_is_exact_under_the_click_model():
    shoppers = Shoppers(noise=0.0)  # attraction: grade 3 of top 3 -> 1, grade 0 -> 0; examination 1/k
    grades = {"d1": 3, "d2": 0, "d3": 3}
    records = [{"kind": "search", "search_id": "s1", "shown": ["d1", "d2"], "teams": ["a", "b"]},
               {"kind": "search", "search_id": "s2", "shown": ["d2", "d3"], "teams": ["a", "b"]},
               {"kind": "search", "search_id": "s3", "shown": ["d1", "d3"], "teams": ["ab", "a"]},
               {"kind": "search", "search_id": "s4", "shown": ["d1", "d3"], "teams": ["a", "b"]},
               {"kind": "search", "search_id": "other run", "shown": ["d1"], "teams": ["a"]}]
    pages = {"s1": (grades, 1.0), "s2": (grades, 1.0), "s3": (grades, 0.5), "s4": (grades, 1.0)}
    got = expected_interleaving(records, pages, 3, shoppers)
    # s1: a wins surely; s2: b's d3 at position 2 is clicked with 1/2; s3: a's d3 at 2 with 0.5 x 1/2 (the shared
    # top counts for neither); s4: a's d1 always clicked, b's d3 with 1/2: a wins 1/2, ties 1/2
    assert got["searches"] == 4
    assert got["wins_a"] == pytest.approx(1 + 0.25 + 0.5, abs=0.001) and got["wins_b"] == pytest.approx(0.5, abs=0.001)
    assert got["ties"] == pytest.approx(0.5 + 0.75 + 0.5, abs=0.001)
    assert got["searches_needed"] > 0
