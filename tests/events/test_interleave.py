"""Team-draft interleaving and its credit (Radlinski et al. 2008)."""
from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from souk.events.interleave import (ab_bootstrap_searches_needed, ab_searches_needed, interleaving_searches_needed,
                                    outcomes, sign_test, summary, team_draft)


@given(st.lists(st.sampled_from("abcdefghij"), unique=True, max_size=10),
       st.lists(st.sampled_from("abcdefghij"), unique=True, max_size=10), st.integers(0, 12), st.integers(0, 99))
def test_team_draft_shows_each_document_once_and_keeps_each_rankings_order(a, b, k, seed):
    shown, teams = team_draft(a, b, k, random.Random(seed))
    assert len(shown) == len(set(shown)) == len(teams) == min(k, len(set(a) | set(b)))
    for team, ranking in (("a", a), ("b", b)):
        mine = [d for d, t in zip(shown, teams) if t == team]
        assert mine == [d for d in ranking if d in mine]  # a team's picks come in its own order
    picks_a, picks_b = teams.count("a"), teams.count("b")
    if set(a) == set(b) and len(shown) == k:
        assert abs(picks_a - picks_b) <= 1


def test_identical_rankings_show_that_ranking():
    shown, teams = team_draft(list("abcdef"), list("abcdef"), 6, random.Random(1))
    assert shown == list("abcdef") and teams == ["ab"] * 6  # agreement is credited to neither


def test_the_common_prefix_belongs_to_neither_team_and_the_draft_starts_after_it():
    for seed in range(20):
        shown, teams = team_draft(list("xyabc"), list("xycab"), 4, random.Random(seed))
        assert shown[:2] == ["x", "y"] and teams[:2] == ["ab", "ab"]
        assert sorted(teams[2:]) == ["a", "b"] and set(shown[2:]) <= {"a", "c"}
    records = [{"kind": "search", "search_id": "s", "interleave": "p,q", "shown": ["x", "y", "a"],
                "teams": ["ab", "ab", "a"]}, {"kind": "click", "search_id": "s", "id": "x"}]
    assert summary(records)["ties"] == 1  # a click on the shared top decides nothing


def test_wins_come_from_clicked_teams_and_the_sign_test_names_a_winner():
    records = []
    for i in range(40):
        records.append({"kind": "search", "search_id": f"s{i}", "interleave": "keyword,ltr", "shown": ["x", "y"],
                        "teams": ["a", "b"]})
        records.append({"kind": "click", "search_id": f"s{i}", "id": "y" if i % 8 else "x"})
    records.append({"kind": "search", "search_id": "tie", "interleave": "keyword,ltr", "shown": ["x"], "teams": ["a"]})
    [o] = outcomes(records)
    assert (o.searches, o.wins_a, o.wins_b, o.ties) == (41, 5, 35, 1)
    assert o.p_value < 0.05 and o.winner == "b" and 6 <= o.significant_at <= 41
    data = summary(records)
    assert data["winner"] == "b" and data["a"] == "keyword" and data["b"] == "ltr"
    assert sign_test(10, 10) == 1.0 and sign_test(0, 0) == 1.0 and summary([])["winner"] is None


def test_the_ab_view_compares_click_through_of_searches_run_alone():
    from souk.events.interleave import ab_summary

    records = []
    for i in range(400):
        pipeline = "keyword" if i % 2 else "ltr"
        records.append({"kind": "search", "search_id": f"s{i}", "pipeline": pipeline, "shown": ["x"]})
        if (pipeline == "ltr" and i % 4 == 0) or (pipeline == "keyword" and i % 20 == 1):
            records.append({"kind": "click", "search_id": f"s{i}", "id": "x"})
    data = ab_summary(records, "keyword", "ltr")
    assert (data["searches_a"], data["searches_b"]) == (200, 200) and data["ctr_b"] == 0.5 and data["ctr_a"] == 0.1
    assert data["p_value"] < 0.001 and data["winner"] == "b"
    assert ab_summary(records, "keyword", "dense")["p_value"] == 1.0


def test_ab_sample_size_matches_the_textbook_and_shrinks_with_the_effect():
    # two-proportion z-test, alpha 0.05 two-sided, power 0.8: 0.45 vs 0.47 needs about 9,750 searches per arm
    assert 9_700 * 2 <= ab_searches_needed(0.45, 0.47) <= 9_800 * 2
    assert ab_searches_needed(0.3, 0.4) < ab_searches_needed(0.3, 0.35) < ab_searches_needed(0.3, 0.31)
    assert ab_searches_needed(0.47, 0.45) == ab_searches_needed(0.45, 0.47)
    assert ab_searches_needed(0.5, 0.5) is None
    with pytest.raises(ValueError):
        ab_searches_needed(1.5, 0.2)


def test_bootstrap_searches_needed_agree_with_the_textbook_sizes():
    # A/B: the bootstrap over 10,000 + 10,000 logged searches lands near the normal-approximation size (19,5xx)
    boot = ab_bootstrap_searches_needed(10_000, 4_500, 10_000, 4_700)
    assert 0.85 * ab_searches_needed(0.45, 0.47) <= boot <= 1.15 * ab_searches_needed(0.45, 0.47)
    assert ab_bootstrap_searches_needed(100, 30, 100, 30) is None
    # interleaving: wins 60:40 need about 190 decided searches (sign test, power 0.8); half of them tied: twice
    decided = interleaving_searches_needed(600, 400, 0)
    assert 150 <= decided <= 240
    assert 1.7 * decided <= interleaving_searches_needed(600, 400, 1000) <= 2.3 * decided
    assert interleaving_searches_needed(5, 5, 100) is None and interleaving_searches_needed(0, 0, 10) is None
