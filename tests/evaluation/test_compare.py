from itertools import product
from pathlib import Path

import numpy as np
import pytest

from souk.evaluation.compare import compare_runs, paired_t_test, randomization_test
from souk.evaluation.metrics import score_run
from souk.evaluation.runs import read_run, sort_run
from support import needs_shared


def exact_sign_flip_p(a: np.ndarray, b: np.ndarray) -> float:
    diff = b - a
    flips = np.array(list(product([-1, 1], repeat=len(diff))))
    return float((np.abs(flips @ diff) >= abs(diff.sum()) - 1e-12).mean())


def test_randomization_test_approaches_the_exact_p_value():
    rng = np.random.default_rng(3)
    a = rng.random(12)
    b = a + rng.normal(0.1, 0.2, 12)
    p = randomization_test(a, b, permutations=20_000, seed=1)
    assert p == pytest.approx(exact_sign_flip_p(a, b), abs=0.01)
    assert p == randomization_test(a, b, permutations=20_000, seed=1)  # fixed seed: reproducible


def test_tests_on_identical_and_constant_differences():
    a = np.linspace(0, 1, 30)
    assert randomization_test(a, a) == 1.0 and paired_t_test(a, a) == 1.0
    assert randomization_test(a, a + 0.1) < 0.001 and paired_t_test(a, a + 0.1) == 0.0
    b = a + np.random.default_rng(0).normal(0, 0.3, 30)
    assert paired_t_test(a, b) == pytest.approx(paired_t_test(b, a))


def test_compare_tiny_runs(tiny, fixtures: Path):
    run_a, run_b = read_run(fixtures / "run_a.trec"), read_run(fixtures / "run_b.trec")
    result = compare_runs(run_a, run_b, tiny, top=5, permutations=2_000)
    a = score_run(run_a, tiny.qrels, ["ndcg@10"]).values["ndcg@10"]
    b = score_run(run_b, tiny.qrels, ["ndcg@10"]).values["ndcg@10"]
    assert (result.wins, result.ties, result.losses) == (
        int((b > a).sum()), int((b == a).sum()), int((b < a).sum())
    )
    assert result.queries == 5 and (result.missing_a, result.missing_b) == (1, 0)
    ndcg = result.metrics[0]
    assert ndcg.metric == "ndcg@10" and ndcg.delta == pytest.approx(b.mean() - a.mean())
    # the per-query scores of both runs reach the tests (randomization: same seed and permutations)
    assert ndcg.p_randomization == randomization_test(a, b, permutations=2_000) and ndcg.p_ttest == paired_t_test(a, b)
    assert ndcg.p_randomization != ndcg.p_ttest  # two different tests, not one number twice
    assert len(result.disagreements) == 5
    deltas = [abs(d.value_b - d.value_a) for d in result.disagreements]
    assert deltas == sorted(deltas, reverse=True) and deltas[-1] > 0
    q5 = next(d for d in result.disagreements if d.qid == "q5")  # missing from A
    assert q5.text == "nonstick pan coating" and q5.top_a == []
    assert q5.top_b == [("d1", None), ("d2", 2)] and q5.judgments == {"d2": 2}
    q1 = next(d for d in result.disagreements if d.qid == "q1")
    assert [docid for docid, _ in q1.top_a] == ["d1", "d7", "d12", "d2", "d10"]
    assert q1.judgments == {"d1": 3, "d7": 2, "d12": 1}  # relevant only, best first
    assert result.to_dict()["disagreements"][0]["qid"] == result.disagreements[0].qid


@needs_shared("data")
def test_compare_real_runs(real_runs):
    """BM25 against itself cut to 20 documents: same nDCG@10, clearly lower Recall@100."""
    dataset, run = real_runs["scifact"]
    result = compare_runs(run, sort_run(run, 20), dataset, permutations=2_000)
    by_name = {m.metric: m for m in result.metrics}
    assert by_name["ndcg@10"].delta == 0 and by_name["ndcg@10"].p_randomization == 1.0
    assert result.ties == result.queries and result.disagreements == []
    assert by_name["recall@100"].delta < 0 and by_name["recall@100"].p_randomization < 0.01
