"""Ranking metrics agree with trec_eval (via pytrec_eval); classification metrics with sklearn."""
from pathlib import Path

import numpy as np
import pytest

from souk.errors import ConfigError, DatasetError
from souk.evaluation.metrics import (
    DEFAULT_METRICS,
    accuracy,
    best_f1_threshold,
    classification_scores,
    compute,
    confusion_matrix,
    judge,
    macro_f1,
    parse_metric,
    per_class,
    score_run,
)
from souk.evaluation.runs import Run, read_run
from support import needs_shared

pytrec_eval = pytest.importorskip("pytrec_eval", reason="pytrec_eval is the reference (dev extra)")

METRICS = [*DEFAULT_METRICS, "ndcg", "recall@10", "ndcg@100", "map@10"]
# souk name -> pytrec_eval measure on the full run
FULL_RUN = {
    "ndcg@10": "ndcg_cut_10", "ndcg@100": "ndcg_cut_100", "ndcg": "ndcg", "recall@100": "recall_100",
    "recall@10": "recall_10", "map": "map", "map@10": "map_cut_10", "precision@10": "P_10",
}


def reference(run: Run, qrels: dict) -> dict[str, dict[str, float]]:
    """Per-query values by pytrec_eval; mrr@10 and judged@10 from the run cut at 10 by trec order."""
    measures = {"ndcg_cut.10,100", "ndcg", "recall.10,100", "map", "map_cut.10", "P.10"}
    full = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate({q: dict(r) for q, r in run.items()})
    # trec_eval's own order, written independently of souk: score desc, then docid desc
    top10 = {q: dict(sorted(r, key=lambda x: (x[1], x[0]), reverse=True)[:10]) for q, r in run.items()}
    cut = pytrec_eval.RelevanceEvaluator(
        qrels, {"recip_rank", "num_rel_ret", "num_nonrel_judged_ret"}
    ).evaluate(top10)
    out = {}
    for qid, values in full.items():
        out[qid] = {name: values[measure] for name, measure in FULL_RUN.items()}
        out[qid]["mrr@10"] = cut[qid]["recip_rank"]
        out[qid]["judged@10"] = (cut[qid]["num_rel_ret"] + cut[qid]["num_nonrel_judged_ret"]) / 10
    return out


def assert_agrees(run: Run, qrels: dict, atol: float = 1e-6) -> dict[str, float]:
    """Every metric of every query the reference scores equals souk's; returns souk's means."""
    ours = score_run(run, qrels, METRICS)
    ref = reference(run, qrels)
    rows = [i for i, qid in enumerate(ours.qids) if qid in ref]
    assert len(rows) == len(ref)
    for name in METRICS:
        expected = np.array([ref[ours.qids[i]][name] for i in rows])
        np.testing.assert_allclose(ours.values[name][rows], expected, rtol=0, atol=atol, err_msg=name)
    return ours.means()


def test_tiny_fixture_agrees_with_trec_eval_including_ties(tiny, fixtures: Path):
    for name in ("run_a.trec", "run_b.trec"):
        assert_agrees(read_run(fixtures / name), tiny.qrels)


def test_queries_missing_from_the_run_score_zero(tiny, fixtures: Path):
    scores = score_run(read_run(fixtures / "run_a.trec"), tiny.qrels, METRICS)
    q5 = scores.qids.index("q5")
    assert scores.missing == 1
    assert all(values[q5] == 0 for values in scores.values.values())


def test_hand_computed_values():
    qrels = {"q": {"a": 2, "b": 0, "c": 1, "z": 1}}
    run = {"q": [("a", 3.0), ("x", 2.0), ("c", 1.0), ("b", 0.5)]}
    v = {k: float(x[0]) for k, x in compute(judge(run, qrels), METRICS + ["judged@2"]).items()}
    dcg = 2 + 1 / np.log2(4)
    assert v["ndcg@10"] == pytest.approx(dcg / (2 + 1 / np.log2(3) + 1 / np.log2(4)))
    assert v["map"] == pytest.approx((1 + 2 / 3) / 3)
    assert v["mrr@10"] == 1.0 and v["recall@10"] == pytest.approx(2 / 3)
    assert v["precision@10"] == pytest.approx(0.2) and v["judged@10"] == pytest.approx(0.3)
    assert v["judged@2"] == pytest.approx(0.5)


@needs_shared("data")
@pytest.mark.parametrize("collection", ["cranfield", "scifact"])
def test_real_bm25_runs_agree_with_trec_eval(real_runs, collection: str):
    dataset, run = real_runs[collection]
    means = assert_agrees(run, dataset.qrels)
    # the shared README's BM25 reference figures (same k1, b, stemmer, stopwords)
    expected = {"cranfield": (0.352, 0.726), "scifact": (0.694, 0.912)}[collection]
    assert (round(means["ndcg@10"], 3), round(means["recall@100"], 3)) == expected


@needs_shared("data")
@pytest.mark.parametrize("collection", ["cranfield", "scifact"])
def test_tie_heavy_runs_agree_with_trec_eval(real_runs, collection: str):
    """Rounding the scores makes many ties: trec_eval breaks them by docid, and so must souk."""
    dataset, run = real_runs[collection]
    rounded = {q: [(d, float(round(s))) for d, s in ranked] for q, ranked in run.items()}
    assert_agrees(rounded, dataset.qrels)


def test_registry_errors_list_known_names():
    with pytest.raises(ConfigError, match=r"unknown metric 'ndgc@10'; known: judged, map, mrr, ndcg"):
        parse_metric("ndgc@10")
    with pytest.raises(ConfigError, match="needs a cutoff, e.g. precision@10"):
        parse_metric("precision")
    with pytest.raises(ConfigError, match="positive integer"):
        parse_metric("ndcg@0")
    assert parse_metric("recall@100") == ("recall", 100) and parse_metric("map") == ("map", None)


# ---------------------------------------------------------------- classification

LABELS_TRUE = ["a", "b", "c", "a", "b", "c", "a", "a", "c", "b"]
LABELS_PRED = ["a", "c", "c", "a", "b", "a", "b", "a", "c", "b"]


def test_classification_against_sklearn():
    sk = pytest.importorskip("sklearn.metrics", reason="sklearn is the classification reference")
    y_true, y_pred = np.array(LABELS_TRUE), np.array(LABELS_PRED)
    assert accuracy(y_true, y_pred) == sk.accuracy_score(LABELS_TRUE, LABELS_PRED)
    assert macro_f1(y_true, y_pred) == pytest.approx(
        sk.f1_score(LABELS_TRUE, LABELS_PRED, average="macro")
    )
    labels, matrix = confusion_matrix(LABELS_TRUE, LABELS_PRED)
    assert labels == ["a", "b", "c"]
    np.testing.assert_array_equal(matrix, sk.confusion_matrix(LABELS_TRUE, LABELS_PRED, labels=labels))
    p, r, f, support = sk.precision_recall_fscore_support(LABELS_TRUE, LABELS_PRED, labels=labels)
    ours = per_class(LABELS_TRUE, LABELS_PRED)
    for i, label in enumerate(labels):
        assert ours[label]["precision"] == pytest.approx(p[i])
        assert ours[label]["recall"] == pytest.approx(r[i])
        assert ours[label]["f1"] == pytest.approx(f[i]) and ours[label]["support"] == support[i]


def test_classification_registry_and_label_errors():
    scores = classification_scores(LABELS_TRUE, LABELS_PRED, ["accuracy", "macro_f1"])
    assert scores["accuracy"] == 0.7
    with pytest.raises(ConfigError, match="unknown metric 'f1'; known: accuracy, macro_f1"):
        classification_scores(LABELS_TRUE, LABELS_PRED, ["f1"])
    with pytest.raises(DatasetError, match="label 'c' is not among the labels given"):
        confusion_matrix(LABELS_TRUE, LABELS_PRED, labels=["a", "b"])


def test_best_f1_threshold_matches_brute_force():
    rng = np.random.default_rng(7)
    truth = rng.random(300) < 0.3
    scores = np.round(truth * 0.3 + rng.random(300), 2)  # rounded: many tied scores
    threshold, f1 = best_f1_threshold(truth, scores)

    def f1_at(t: float) -> float:
        predicted = scores >= t
        tp = (predicted & truth).sum()
        return 2 * tp / (predicted.sum() + truth.sum())

    brute = max(np.unique(scores), key=f1_at)
    assert f1 == pytest.approx(f1_at(brute)) and f1_at(threshold) == pytest.approx(f1)
    with pytest.raises(DatasetError, match="at least one positive"):
        best_f1_threshold([False, False], [0.1, 0.2])
