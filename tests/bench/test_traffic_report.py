"""`souk bench traffic`: the traffic benchmark's steps read back as one table."""
from __future__ import annotations

import json

import pytest

from souk.bench.traffic import REPORT_FILES, SHOPPER_FILES, report
from souk.errors import ConfigError


def write_steps(tmp_path, bm25=0.38, judged=0.42, clicks=0.41):
    steps = {
        "bm25": {"ndcg@10": bm25, "dataset": "homedepot", "split": "dev"},
        "judged_ltr": {"ndcg@10": judged}, "click_ltr": {"ndcg@10": clicks},
        "experiment": {"experiment": "bm25,ltr", "searches": 3000, "wins_a": 400, "wins_b": 600, "ties": 2000,
                       "p_value": 1e-9, "winner": "b", "significant_at": 250, "searches_needed": 400,
                       "ab": {"searches_needed": 6000}},
        "ab": {"searches": 3000, "ab": {"a": "bm25", "b": "ltr", "arms": {}, "searches_needed": 25000}},
    }
    for name, file in REPORT_FILES.items():
        # a step's output may carry progress lines before its JSON: the last line counts
        (tmp_path / file).write_text("noise\n" + json.dumps(steps[name]) + "\n", encoding="utf-8")


def test_the_table_states_the_share_of_the_judged_gain_and_interleaving_against_ab(tmp_path):
    write_steps(tmp_path)
    got = report(tmp_path)
    assert got["ndcg@10"] == {"bm25": 0.38, "judged_ltr": 0.42, "click_ltr": 0.41}
    assert got["share_of_judged_gain"] == pytest.approx(0.75)
    assert got["interleaving_searches_to_significance"] == 250 and got["ab_searches_needed"] == 25000
    assert got["ab_over_interleaving"] == 100.0
    assert got["interleaving"]["winner"] == got["offline_winner"] == "b"
    assert got["bootstrap"] == {"interleaving_searches_needed": 400, "ab_searches_needed": 6000,
                                "ab_over_interleaving": 15.0}


def test_a_missing_step_names_it_and_says_how_to_make_it(tmp_path):
    write_steps(tmp_path)
    (tmp_path / REPORT_FILES["ab"]).unlink()
    with pytest.raises(ConfigError, match="step ab .*make bench-traffic"):
        report(tmp_path)


def test_the_shopper_population_is_reported_beside_the_independent_searches_when_its_steps_ran(tmp_path):
    write_steps(tmp_path)
    assert report(tmp_path)["shoppers"] is None  # an older run: nothing made up
    experiment = {"searches": 3000, "wins_a": 140, "wins_b": 180, "ties": 2680, "p_value": 0.03, "winner": "b",
                  "significant_at": 2900, "searches_needed": 2000, "shopper_searches_needed": 2100,
                  "ab": {"searches_needed": 8000, "shopper_searches_needed": 10500, "design_effect": 1.2,
                         "shoppers_a": 500, "shoppers_b": 500}}
    ab = {"searches": 3000, "shoppers": {"per_shopper": 3, "engagement": [1.0, 1.0]}, "ab": {"searches_needed": 9000}}
    interleave = {"searches": 3000, "expected_interleaving": {"searches_needed": 1000}}
    for name, step in (("experiment", experiment), ("ab", ab), ("interleave", interleave)):
        (tmp_path / SHOPPER_FILES[name]).write_text(json.dumps(step) + "\n", encoding="utf-8")
    got = report(tmp_path)
    shoppers = got["shoppers"]
    assert shoppers["per_shopper"] == 3 and shoppers["engagement"] == [1.0, 1.0]
    assert shoppers["interleaving_shopper_searches_needed"] == 2100 and shoppers["ab_shopper_searches_needed"] == 10500
    assert shoppers["ab_over_interleaving"] == 5.0 and shoppers["ab_expected_shopper_searches_needed"] == 10800
    assert shoppers["interleaving_design_effect"] == 1.05
    assert shoppers["interleaving_expected_shopper_searches_needed"] == 1050
    assert shoppers["expected_ab_over_interleaving"] == round(10800 / 1050, 1)
    assert got["bootstrap"]["ab_over_interleaving"] == 15.0  # the independent searches' numbers stay


def test_the_exact_power_rows_are_reported_when_their_steps_ran(tmp_path):
    from souk.bench.traffic import POWER_FILES

    write_steps(tmp_path)
    assert report(tmp_path)["exact"] is None
    row = {"per_shopper": 1, "interleaving": 1668, "interleaving_design_effect": 1.0, "ab": {"clicked": 12309},
           "interleaving_original_draft": 3873,
           "ab_over_interleaving": {"clicked": 7.4}}
    step = {"shoppers": {"engagement": None}, "searches_needed": [row]}
    (tmp_path / POWER_FILES["shoppers_alike"]).write_text(json.dumps(step) + "\n", encoding="utf-8")
    got = report(tmp_path)["exact"]
    assert list(got) == ["shoppers_alike"]
    assert got["shoppers_alike"]["rows"] == [{"per_shopper": 1, "interleaving": 1668, "ab": {"clicked": 12309},
                                              "interleaving_original_draft": 3873,
                                              "ab_over_interleaving": {"clicked": 7.4}}]
