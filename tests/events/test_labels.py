"""Labels from clicks: the position-based model recovers examination and attractiveness; bots are left out."""
from __future__ import annotations

import numpy as np
import pytest

from souk.errors import ConfigError, DatasetError
from souk.evaluation.datasets import Dataset
from souk.events.labels import (CLICK_MEMBERS, LTR_ROUNDS, POSITION_BIAS, UNSHOWN_POSITION, ClickDataset, ClickModel,
                                Observations, click_dataset, fit_pbm, ips_grades, ltr_options, merge, moved_pairs,
                                observations, posterior_grades, shown_floor)


def simulated(n_searches=3000, seed=0, theta=(1.0, 0.6, 0.35, 0.2, 0.1)):
    """Queries whose 5 documents are shown in a random order each time (so positions vary), doc 0 the best."""
    rng = np.random.default_rng(seed)
    gamma = np.array([0.9, 0.5, 0.3, 0.1, 0.05])
    records = []
    for i in range(n_searches):
        q = f"query {i % 30}"
        order = rng.permutation(5)
        sid = f"s{i}"
        records.append({"kind": "search", "search_id": sid, "query": q, "shown": [f"{q}/d{j}" for j in order]})
        for pos, j in enumerate(order):
            if rng.random() < theta[pos] * gamma[j]:
                records.append({"kind": "click", "search_id": sid, "id": f"{q}/d{j}"})
    return records, np.array(theta), gamma


def test_em_recovers_position_bias_when_documents_move():
    records, theta, gamma = simulated()
    obs = observations(records)
    model = fit_pbm(obs)
    assert np.abs(model.theta[:5] - theta).max() < 0.12
    by_doc = {}
    for (key, doc), g in zip(obs.pairs, model.gamma):
        by_doc.setdefault(doc[-2:], []).append(g)
    means = [np.mean(by_doc[f"d{j}"]) for j in range(5)]
    assert means == sorted(means, reverse=True)  # attractiveness in the true order


def test_moved_pairs_says_whether_the_log_identifies_position_bias():
    records, _, _ = simulated(600)
    assert moved_pairs(observations(records)) > 0.9  # every order is random: documents move
    fixed = [{"kind": "search", "search_id": f"s{i}", "query": f"q{i % 7}", "shown": ["a", "b", "c"]}
             for i in range(50)]
    fixed += [{"kind": "click", "search_id": f"s{i}", "id": "b"} for i in range(0, 50, 3)]
    obs = observations(fixed)
    assert moved_pairs(obs) == 0.0  # one deterministic ranker: theta is the prior's
    _, report = click_dataset(records)
    assert report["moved_pairs"] > 0.9


def test_labels_grade_clicked_documents_and_ignore_bots_and_repeats():
    records, _, _ = simulated(1500)
    dataset, report = click_dataset(records)
    assert report["queries"] == 30 and dataset.split == "clicks"
    tops = [max(g.values()) == max((v for d, v in g.items() if d.endswith("/d0")), default=-1)
            for g in dataset.qrels.values()]
    assert sum(tops) >= 25  # the most attractive document has the top grade (ties allowed: grades are coarse)
    # a bot clicking everything on one query many times, and a shopper clicking one result ten times
    bot = [{"kind": "search", "search_id": f"b{i}", "query": "query 0", "session": "bot",
            "shown": [f"query 0/d{j}" for j in range(4, -1, -1)]} for i in range(600)]
    bot += [{"kind": "click", "search_id": f"b{i}", "id": "query 0/d4"} for i in range(600)]
    _, with_bot = click_dataset(records + bot)
    assert with_bot["bot_searches"] == 600 and with_bot["bot_sessions"] == 1
    assert observations(records + bot).stats["clicks"] == observations(records).stats["clicks"]


def test_too_little_traffic_is_a_clear_error():
    with pytest.raises(DatasetError, match="collect more traffic"):
        click_dataset([{"kind": "search", "search_id": "s", "query": "q", "shown": ["a"]},
                       {"kind": "click", "search_id": "s", "id": "a"}])


def grades_of(rows, theta=(1.0, 0.5, 0.25, 0.125)):
    """Grades of pairs observed as rows (pair, position, clicked) under a fixed examination curve."""
    pair, position, clicked = (np.asarray(c) for c in zip(*rows))
    obs = Observations([("q", f"d{i}") for i in range(int(pair.max()) + 1)], pair.astype(np.int64),
                       position.astype(np.int64), clicked.astype(np.float64))
    model = ClickModel(np.asarray(theta), np.full(len(obs.pairs), 0.2), 1)
    return posterior_grades(obs, model).tolist(), ips_grades(obs, model).tolist()


def test_posterior_grades_do_not_inflate_one_click_far_down():
    # d0: clicked in 3 of 3 searches at the top; d1: clicked once at position 4 (examined 1/8); d2: shown, never clicked
    rows = [(0, 1, 1), (0, 1, 1), (0, 1, 1), (1, 4, 1), (2, 2, 0), (2, 2, 0)]
    posterior, ips = grades_of(rows)
    assert ips[1] > ips[0]  # inverse propensity: the one click far down outranks three at the top
    assert posterior[0] >= posterior[1] > posterior[2] == 0  # one click is one click wherever it was


def test_posterior_grades_fall_with_unclicked_examinations():
    once = [(0, 1, 1)]
    ignored_after = [(0, 1, 1), (0, 1, 0), (0, 1, 0), (0, 1, 0)]
    ignored_far_down = [(0, 1, 1), (0, 4, 0), (0, 4, 0), (0, 4, 0)]
    assert grades_of(ignored_after)[0][0] < grades_of(once)[0][0]
    assert grades_of(ignored_after)[0][0] < grades_of(ignored_far_down)[0][0]  # barely examined: little evidence


def test_unknown_grading_is_a_clear_error():
    records, _, _ = simulated(200)
    with pytest.raises(ConfigError, match="posterior"):
        click_dataset(records, grading="ctr")


def test_shown_floor_puts_every_shown_document_above_unshown_candidates_and_keeps_click_order():
    records, _, _ = simulated(1500)
    plain, plain_report = click_dataset(records, shown=False)
    floored, report = click_dataset(records, shown=True)
    assert report["shown_floor"] and not plain_report["shown_floor"]
    assert report["clicked_queries"] == plain_report["clicked_queries"] == 30
    for qid, grades in plain.qrels.items():
        for doc, grade in grades.items():
            assert floored.qrels[qid][doc] == (grade + 1 if grade > 0 else 1)  # shown, never clicked: 1
    assert shown_floor(np.array([0, 1, 4])).tolist() == [1, 2, 5]


def test_queries_without_a_click_do_not_count_towards_enough_traffic():
    searches = [{"kind": "search", "search_id": f"s{i}", "query": f"q{i}", "shown": ["a", "b"]} for i in range(40)]
    clicks = [{"kind": "click", "search_id": f"s{i}", "id": "a"} for i in range(5)]
    with pytest.raises(DatasetError, match="only 5 queries with a clicked result"):
        click_dataset(searches + clicks, shown=True)


def test_ltr_from_clicks_never_reads_the_click_model_that_saw_its_labels():
    assert ltr_options(alone=True) == {"clicks": False, "activate_anyway": True, "rounds": LTR_ROUNDS, "cv": False,
                                       "position_bias": POSITION_BIAS}
    assert CLICK_MEMBERS == 3  # opt-in (`--option ltr.ensemble=true --option ltr.members=3`), see its comment
    assert ltr_options(alone=False) == {"clicks": False}  # with a judged dev split: its early stopping and veto


def test_click_labels_carry_the_position_each_document_was_first_shown_at():
    """What the ltr fitter's position-debiased objective reads (souk.training.ltr.click_positions)."""
    searches = [{"kind": "search", "search_id": f"s{i}", "query": f"q{i % 12}", "session": f"u{i}",
                 "shown": ["a", "b", "c"] if i < 24 else ["c", "a", "b"]} for i in range(36)]
    clicks = [{"kind": "click", "search_id": f"s{i}", "id": "b"} for i in range(36)]
    dataset, _ = click_dataset(searches + clicks)
    assert isinstance(dataset, ClickDataset) and set(dataset.positions) == set(dataset.qrels)
    qid = next(iter(dataset.qrels))
    assert dataset.positions[qid] == {"a": 1, "b": 2, "c": 1}  # the smallest position of every impression
    assert dataset.shown_at(qid, ["c", "b", "never"]).tolist() == [1, 2, UNSHOWN_POSITION]
    assert type(merge(dataset, dataset)) is Dataset  # with judged queries: no positions (plain lambdarank)
