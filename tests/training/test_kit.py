"""The training kit: splits and samples, candidates, the one nDCG@10, the dev evaluator the loop obeys, curves."""
from __future__ import annotations

import random

import numpy as np
import pytest

from souk.errors import ConfigError
from souk.evaluation.datasets import Dataset
from souk.evaluation.metrics import score_run
from souk.training.kit import (DevEvaluator, as_evaluator, candidates, hold_out, ndcg10, prior_pipeline,
                               ranking_evaluator, reordered, sample, split_train, write_curve, write_epoch_curve)


def judged(n: int) -> Dataset:
    queries = {f"q{i}": f"query {i}" for i in range(n)}
    return Dataset(queries, {f"q{i}": {f"d{i}": 1} for i in range(n)}, 0, "toy", "train")


def test_split_train_holds_out_a_seeded_disjoint_share_and_refuses_too_few():
    data = judged(20)
    train, held = split_train(data, 0.25, 3, np.random.default_rng(1))
    again, held2 = split_train(data, 0.25, 3, np.random.default_rng(1))
    assert len(held) == 3 and len(train) == 17 and not set(train.qrels) & set(held.qrels)
    assert held.qrels == held2.qrels and held.split == "train (held out)"
    with pytest.raises(ConfigError, match="too few to hold some out"):
        split_train(judged(2), 0.1, 5, np.random.default_rng(1))


def test_sample_caps_the_queries_and_keeps_small_sets_whole():
    data = judged(30)
    small = sample(data, 10, np.random.default_rng(0))
    assert len(small) == 10 and set(small.qrels) <= set(data.qrels)
    assert sample(data, 30, np.random.default_rng(0)) is data


def test_hold_out_shuffles_once_and_holds_at_least_the_floor():
    qids = [f"q{i}" for i in range(25)]
    kept, held = hold_out(qids, 0.1, random.Random(3))
    order = list(qids)
    random.Random(3).shuffle(order)
    assert held == order[:2] and kept == order[2:]  # int(2.5) held, in the rng's shuffled order
    assert hold_out(qids[:5], 0.1, random.Random(3))[1] != [] and hold_out(qids, 0.0, random.Random(3), 0)[1] == []


def test_the_one_ndcg_is_souk_eval_s_and_reordering_follows_the_scores():
    qrels = {"a": {"x": 2, "y": 1}, "b": {"z": 1}}
    heads = {"a": (["y", "w", "x"], np.array([3.0, 2.0, 1.0], np.float32))}
    good = reordered(heads, {"a": np.array([1.0, 0.0, 2.0], np.float32)}, qrels)
    bad = reordered(heads, {"a": np.array([2.0, 3.0, 1.0], np.float32)}, qrels)
    assert set(good) == {"a"}  # b has no candidates: left out of the run, scored 0 by the metric
    assert ndcg10(good, qrels) == pytest.approx(float(score_run(good, qrels, ["ndcg@10"]).means()["ndcg@10"]))
    assert ndcg10(good, qrels) == pytest.approx(0.5) and ndcg10(bad, qrels) < 0.5
    assert ndcg10(good, {}) == 0.0


def test_the_evaluator_says_which_way_is_better_and_survives_wrapping():
    loss = DevEvaluator(lambda: 0.3, "loss", greater_is_better=False)
    assert loss.better(0.2, 0.3) and not loss.better(0.4, 0.3)
    assert DevEvaluator(lambda: 1.0).better(0.4, 0.3)
    wrapped = loss.wrapped(lambda f: (lambda: f() + 1))
    assert wrapped() == pytest.approx(1.3) and wrapped.primary_metric == "loss" and not wrapped.greater_is_better
    plain = as_evaluator(lambda: 0.5)
    assert plain is not None and plain() == 0.5 and plain.greater_is_better and as_evaluator(loss) is loss
    run = {"a": [("x", 1.0)]}
    assert ranking_evaluator({"a": {"x": 1}}, lambda: run)() == pytest.approx(1.0)


def test_curves_are_drawn_by_the_one_public_plot(tmp_path):
    curve = [{"step": 0, "phase": "start", "loss": None, "dev": 0.2},
             {"step": 5, "phase": "fit", "loss": 1.0, "dev": 0.4}]
    write_curve(curve, tmp_path / "steps.png", "toy", best_step=5, lines={"recall alone": 0.3})
    write_epoch_curve([0.2, 0.4, 0.35], 1, "toy", "toy by epoch", tmp_path / "epochs.png")
    for name in ("steps.png", "epochs.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_candidates_come_from_the_pipeline_without_the_stage(product_index):
    from souk.index import Index

    searcher = Index.open(product_index).searcher()
    prior = prior_pipeline(searcher, "cross")
    heads = candidates(prior, {"a": "iphone case", "b": "zzzz-no-such-word"}, 3)
    assert set(heads) == {"a", "b"} and 0 < len(heads["a"][0]) <= 3 and heads["a"][1].dtype == np.float32
    assert list(heads["a"][1]) == sorted(heads["a"][1], reverse=True) and heads["b"][0] == []


def test_held_out_train_is_a_fixed_slice_whatever_the_seed():
    from souk.training.kit import held_out_train

    data = Dataset({f"q{i}": "x" for i in range(50)}, {f"q{i}": {"d": 1} for i in range(50)}, 0, "t", "train")
    learn, held = held_out_train(data)
    again = held_out_train(data)[1]
    assert len(held.qrels) == 10 and set(held.qrels) == set(again.qrels)
    assert not set(held.qrels) & set(learn.qrels) and len(learn.qrels) == 40
    assert len(held_out_train(data, cap=3)[1].qrels) == 3


def test_a_fit_searcher_reads_bm25_from_the_impacts_from_the_first_query(tmp_path):
    """Else the impacts come from a thread mid-fit, and BM25 sums in another float order gave one seed two models."""
    from ltr_shop import shop_index

    from souk.index import Index
    from souk.training.kit import fit_searcher

    path = shop_index(tmp_path / "index")
    searcher = fit_searcher(path)
    assert searcher._impacts  # built before any query
    assert not Index.open(path).searcher()._impacts  # (a plain searcher builds them only once features ask)
