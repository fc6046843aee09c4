"""Team-draft interleaving and its credit (Radlinski et al. 2008)."""
from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from souk.events.interleave import (ab_bootstrap_searches_needed, ab_searches_needed, interleaving_searches_needed,
                                    outcomes, sign_test, summary, team_draft, team_draft_pages)


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


def shopper_records(shoppers, each, clicking, session=True):
    """A/B records: shopper i of each arm makes `each` searches (one session), all clicked when clicking(arm, i)."""
    records = []
    for pipeline in ("keyword", "ltr"):
        for i in range(shoppers):
            for j in range(each):
                sid = f"{pipeline}-{i}-{j}"
                records.append({"kind": "search", "search_id": sid, "pipeline": pipeline, "shown": ["x"],
                                **({"session": f"{pipeline}-{i}"} if session else {})})
                if clicking(pipeline, i, j):
                    records.append({"kind": "click", "search_id": sid, "id": "x"})
    return records


def test_an_ab_split_of_shoppers_is_judged_by_the_spread_between_shoppers():
    from souk.events.interleave import ab_summary

    # each shopper clicks all of its 10 searches or none: 10 searches of one shopper are worth about one search
    def clustered(pipeline, i, j):
        return i % 10 < (4 if pipeline == "keyword" else 5)

    def spread(pipeline, i, j):  # the same click-through, spread evenly over the shoppers
        return (i + j) % 10 < (4 if pipeline == "keyword" else 5)

    def independent(pipeline, i, j):  # each search on its own
        return draws.random() < (0.4 if pipeline == "keyword" else 0.5)

    draws = random.Random(3)
    together = ab_summary(shopper_records(100, 10, clustered), "keyword", "ltr")
    apart = ab_summary(shopper_records(100, 10, spread), "keyword", "ltr")
    assert together["ctr_a"] == apart["ctr_a"] == 0.4 and together["ctr_b"] == apart["ctr_b"] == 0.5
    assert together["shoppers_a"] == together["shoppers_b"] == 100
    assert together["p_value"] == apart["p_value"] < 0.001  # per search the two logs look alike
    assert together["shopper_p_value"] > 0.1 and apart["shopper_p_value"] == 0.0  # no spread at all: certain
    assert together["shopper_searches_needed"] > 5 * together["searches_needed"]
    assert 9 < together["design_effect"] < 11  # 1 + (10 - 1) x 1: all of a shopper's searches alike
    alone = ab_summary(shopper_records(100, 10, independent), "keyword", "ltr")
    assert 0.75 < alone["shopper_searches_needed"] / alone["searches_needed"] < 1.33
    assert 0.7 < alone["design_effect"] < 1.3


def test_searches_without_a_session_are_shoppers_of_their_own():
    from souk.events.interleave import ab_summary

    data = ab_summary(shopper_records(300, 1, lambda p, i, j: i % 10 < (3 if p == "keyword" else 4), session=False),
                      "keyword", "ltr")
    assert data["shoppers_a"] == data["searches_a"] == 300
    assert 0.75 < data["shopper_searches_needed"] / data["searches_needed"] < 1.33


def test_the_clustered_z_is_the_two_proportion_z_for_one_search_a_shopper():
    import numpy as np

    from souk.events.interleave import _moments, clustered_z

    a, b = [[1, i < 30] for i in range(100)], [[1, i < 50] for i in range(100)]
    z = float(clustered_z(_moments(a).sum(axis=0), _moments(b).sum(axis=0)))
    variance = 0.3 * 0.7 * 100 / 99 / 100 + 0.5 * 0.5 * 100 / 99 / 100  # sample variances over 100 shoppers
    assert z == pytest.approx(0.2 / np.sqrt(variance))
    # ratio of sums: a shopper with 3 searches counts 3 times in its arm's click-through
    c = [[3, 3], [1, 0]]
    assert float(clustered_z(_moments(c).sum(axis=0), _moments(c).sum(axis=0))) == 0.0


def test_interleaving_resampled_by_shopper_sees_shoppers_whose_wins_go_together():
    draws = random.Random(5)

    def records(together):
        out = []
        for i in range(300):
            for j in range(5):
                sid = f"s{i}-{j}"
                won = (i % 10 < 6) if together else draws.random() < 0.6  # b wins about 60% of the searches
                out.append({"kind": "search", "search_id": sid, "interleave": "keyword,ltr", "shown": ["x", "y"],
                            "teams": ["a", "b"], "session": f"u{i}"})
                out.append({"kind": "click", "search_id": sid, "id": "y" if won else "x"})
        return out

    [together], [apart] = outcomes(records(True)), outcomes(records(False))
    assert (together.wins_a, together.wins_b) == (600, 900) and 0.55 < apart.wins_b / 1500 < 0.65
    assert together.shopper_searches_needed > 3 * together.searches_needed  # 5 searches of a shopper: one answer
    assert 0.75 < apart.shopper_searches_needed / apart.searches_needed < 1.33


def test_team_draft_pages_are_every_draft_with_its_chance():
    a = ["d1", "d2", "d3", "d4", "d5", "d6"]
    b = ["d1", "d4", "d2", "d7", "d3", "d8"]
    pages = team_draft_pages(a, b, 6)
    assert sum(c for _, _, c in pages) == pytest.approx(1.0)
    assert len(pages) <= 2 ** 3
    seen = {(tuple(s), tuple(t)) for s, t, _ in pages}
    rng = random.Random(3)
    counts: dict[tuple, int] = {}
    for _ in range(4000):
        shown, teams = team_draft(a, b, 6, rng)
        assert (tuple(shown), tuple(teams)) in seen
        counts[(tuple(shown), tuple(teams))] = counts.get((tuple(shown), tuple(teams)), 0) + 1
    for shown, teams, chance in pages:
        assert counts.get((tuple(shown), tuple(teams)), 0) / 4000 == pytest.approx(chance, abs=0.03)
    original = team_draft_pages(a, b, 6, shared_prefix=False)  # the common first result drafted too
    assert sum(c for _, _, c in original) == pytest.approx(1.0)
    assert all("ab" not in teams for _, teams, _ in original) and any(t[0] == "b" for _, t, _ in original)


def test_a_tiny_p_value_is_reported_to_significant_digits_not_as_zero():
    from souk.events.interleave import reported_p, sign_test

    p = sign_test(93, 200)  # a SciFact run's 93:200
    assert 0 < reported_p(p) == pytest.approx(3.808e-10, rel=1e-3)
    assert reported_p(0.584664711728692) == 0.584665 and reported_p(1.0) == 1.0
