"""Exact searches-needed of interleaving and A/B (souk.bench.power), checked against simulated shoppers."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest

from souk.bench.power import exact_power, pipeline_rankings
from souk.bench.traffic import Shoppers
from souk.errors import ConfigError
from souk.events.interleave import team_draft
from support import FIXTURES, run_main

A = ["d1", "d2", "d3", "d4", "d5", "d6"]
B = ["d1", "d4", "d2", "d7", "d3", "d8"]


def _simulate(rankings, qrels, shoppers, searches, seed=5):
    """Per-search metrics of A and B pages and the interleaved preference, drawn as `souk simulate` draws clicks."""
    rng = random.Random(seed)
    top = max(g for judged in qrels.values() for g in judged.values())
    qids = sorted(rankings)
    out = {"clicked": [[], []], "clicks": [[], []], "first_click_rr": [[], []], "d": []}

    def clicks(page, grades, e):
        return [rng.random() < shoppers.examined(i + 1, e) * shoppers.attracted(grades.get(doc, 0), top)
                for i, doc in enumerate(page)]

    for _ in range(searches):
        q = rng.choice(qids)
        e = rng.betavariate(*shoppers.engagement) if shoppers.engagement else 1.0
        for side in (0, 1):
            c = clicks(rankings[q][side], qrels[q], e)
            out["clicked"][side].append(float(any(c)))
            out["clicks"][side].append(float(sum(c)))
            out["first_click_rr"][side].append(1 / (c.index(True) + 1) if any(c) else 0.0)
        shown, teams = team_draft(rankings[q][0], rankings[q][1], 6, rng)
        c = clicks(shown, qrels[q], e)
        margin = sum(hit * {"a": 1, "b": -1}.get(t, 0) for hit, t in zip(c, teams))
        out["d"].append(float(np.sign(-margin)))
    return out


@pytest.mark.parametrize("engagement", [None, (2.0, 3.0)])
def test_exact_moments_match_simulated_shoppers(engagement):
    rankings = {"q1": (A, B), "q2": (B, A[::-1]), "q3": (["d7", "d8", "d1"], ["d1", "d8", "d7"])}
    qrels = {"q1": {"d4": 3, "d2": 1, "d7": 2}, "q2": {"d1": 3, "d5": 2}, "q3": {"d1": 2}}
    shoppers = Shoppers(size=6, engagement=engagement)
    exact = exact_power(rankings, qrels, shoppers)
    drawn = _simulate(rankings, qrels, shoppers, 20000)
    for metric in ("clicked", "clicks", "first_click_rr"):
        for side, values in zip("ab", drawn[metric]):
            assert exact["metrics"][metric][side]["mean"] == pytest.approx(np.mean(values), abs=0.015)
            assert exact["metrics"][metric][side]["variance"] == pytest.approx(np.var(values), abs=0.02)
    assert exact["interleaving"]["mean"] == pytest.approx(np.mean(drawn["d"]), abs=0.015)
    assert exact["interleaving"]["variance"] == pytest.approx(np.var(drawn["d"]), abs=0.02)


def test_searches_needed_grow_with_searches_a_shopper_for_ab_more_than_for_interleaving():
    rankings = {f"q{i}": (A, B) for i in range(6)}
    qrels = {f"q{i}": {"d4": 3, "d7": 2, "d1": i % 3} for i in range(6)}
    got = exact_power(rankings, qrels, Shoppers(size=6, engagement=(1.0, 1.0)), per_shopper=(1, 10))
    one, ten = got["searches_needed"]
    assert ten["ab"]["clicked"] > one["ab"]["clicked"] and ten["ab_design_effect"]["clicked"] > 1.2
    assert ten["interleaving"] >= one["interleaving"]
    assert one["interleaving_original_draft"] > one["interleaving"]  # the shared first result adds only noise
    assert ten["ab_over_interleaving"]["clicked"] > one["ab_over_interleaving"]["clicked"]
    at = exact_power(rankings, qrels, Shoppers(size=6, engagement=(1.0, 1.0)), at=one["interleaving"])
    assert 0.8 <= at["searches_needed"][0]["power_at"]["interleaving"] < 0.82  # at the size it needs
    assert at["searches_needed"][0]["power_at"]["ab"]["clicked"] < 0.8
    flat = exact_power(rankings, qrels, Shoppers(size=6), per_shopper=(1, 10))["searches_needed"]
    assert flat[0]["ab"] == flat[1]["ab"]  # every shopper alike: searches of one shopper are independent


def test_identical_rankers_need_no_finite_experiment_and_bad_input_is_refused():
    got = exact_power({"q": (A, A)}, {"q": {"d1": 3}}, Shoppers(size=6))
    row = got["searches_needed"][0]
    assert row["interleaving"] is None and row["ab"]["clicked"] is None and got["interleaving"]["ties"] == 1.0
    with pytest.raises(ConfigError, match="no judged query"):
        exact_power({}, {}, Shoppers())
    with pytest.raises(ConfigError, match="per-shopper"):
        exact_power({"q": (A, B)}, {"q": {"d1": 3}}, Shoppers(), per_shopper=(0,))
    with pytest.raises(ConfigError, match="searches"):
        exact_power({"q": (A, B)}, {"q": {"d1": 3}}, Shoppers(), at=0)


def test_bench_power_ranks_with_the_index_and_prints_one_object(product_index):
    data = FIXTURES / "beir-mini"
    out = run_main("bench", "power", "--index", str(product_index), "--dataset", str(data), "--split", "test",
                   "--pipelines", "bm25,keyword", "--per-shopper", "1,3", "--json")
    got = json.loads(out.stdout)
    assert got["pipelines"] == ["bm25", "keyword"] and got["queries"] == 4  # the judged ones
    assert [row["per_shopper"] for row in got["searches_needed"]] == [1, 3]
    bad = run_main("bench", "power", "--index", str(product_index), "--dataset", str(data), "--split", "test",
                   "--pipelines", "bm25,bm25", check=False)
    assert bad.returncode != 0 and "two different pipelines" in bad.stderr


def test_rankings_are_the_pages_a_named_search_shows(product_index):
    from souk.engine import Engine

    got = pipeline_rankings(product_index, {"q": "tea"}, "bm25", "keyword", 3)
    engine = Engine.open(product_index)
    assert got["q"][0] == [h.id for h in engine.search("tea", pipeline="bm25", k=3, record=False).hits]
