"""Did run B help over run A, and where did it hurt? Paired tests over the same judged queries.

Both tests are two-sided and paired by query. The randomization test flips the sign of each
query's difference at random (fixed seed, so p-values are reproducible); the t-test is scipy's
`ttest_rel`. With a few dozen queries, trust the randomization test over the t-test.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from souk.evaluation.datasets import Dataset
from souk.evaluation.metrics import DEFAULT_METRICS, PerQuery, score_run
from souk.evaluation.runs import Run, sort_run


@dataclass(frozen=True)
class MetricComparison:
    metric: str
    mean_a: float
    mean_b: float
    delta: float  # mean_b - mean_a
    p_randomization: float
    p_ttest: float


@dataclass(frozen=True)
class Disagreement:
    """One query where the runs differ most: its text, both top lists (docid, grade or None)."""

    qid: str
    text: str
    value_a: float
    value_b: float
    top_a: list[tuple[str, int | None]]
    top_b: list[tuple[str, int | None]]
    judgments: dict[str, int]  # the query's relevant documents and their grades


@dataclass(frozen=True)
class Comparison:
    primary: str
    metrics: list[MetricComparison]
    wins: int  # queries where B beats A on the primary metric
    ties: int
    losses: int
    queries: int
    missing_a: int
    missing_b: int
    disagreements: list[Disagreement]

    def to_dict(self) -> dict:
        return asdict(self)


def randomization_test(
    a: np.ndarray, b: np.ndarray, permutations: int = 10_000, seed: int = 0, chunk: int = 1_000
) -> float:
    """Two-sided p-value of the mean paired difference under random sign flips (add-one smoothed)."""
    diff = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    if not len(diff) or not diff.any():
        return 1.0
    observed = abs(diff.mean()) - 1e-12  # tolerance so float noise never hides the identity flip
    rng = np.random.default_rng(seed)
    extreme = 0
    for start in range(0, permutations, chunk):
        size = min(chunk, permutations - start)
        signs = rng.integers(0, 2, size=(size, len(diff)), dtype=np.int8) * 2 - 1
        extreme += int((np.abs(signs @ diff) / len(diff) >= observed).sum())
    return (extreme + 1) / (permutations + 1)


def paired_t_test(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p-value of scipy's paired t-test; 1.0 when the runs never differ."""
    from scipy.stats import ttest_rel

    diff = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    if len(diff) < 2 or not diff.any():
        return 1.0
    if np.ptp(diff) <= 1e-12:  # the same nonzero difference on every query: no variance to test
        return 0.0
    return float(ttest_rel(b, a).pvalue)


def compare_runs(
    run_a: Run,
    run_b: Run,
    dataset: Dataset,
    metrics: Sequence[str] = DEFAULT_METRICS,
    primary: str = "ndcg@10",
    top: int = 10,
    permutations: int = 10_000,
    seed: int = 0,
) -> Comparison:
    """Metric table with p-values, wins/ties/losses and the `top` most disagreeing queries."""
    names = list(dict.fromkeys([primary, *metrics]))
    scores_a = score_run(run_a, dataset.qrels, names)
    scores_b = score_run(run_b, dataset.qrels, names)
    table = [_compare_metric(name, scores_a, scores_b, permutations, seed) for name in names]
    a, b = scores_a.values[primary], scores_b.values[primary]
    diff = b - a
    tied = np.isclose(a, b, rtol=0.0, atol=1e-12)
    worst = np.argsort(-np.abs(diff), kind="stable")[: min(top, int((~tied).sum()))]
    return Comparison(
        primary=primary,
        metrics=table,
        wins=int(((diff > 0) & ~tied).sum()),
        ties=int(tied.sum()),
        losses=int(((diff < 0) & ~tied).sum()),
        queries=len(scores_a.qids),
        missing_a=scores_a.missing,
        missing_b=scores_b.missing,
        disagreements=[
            _disagreement(scores_a.qids[i], float(a[i]), float(b[i]), run_a, run_b, dataset)
            for i in worst
        ],
    )


def _compare_metric(
    name: str, scores_a: PerQuery, scores_b: PerQuery, permutations: int, seed: int
) -> MetricComparison:
    a, b = scores_a.values[name], scores_b.values[name]
    return MetricComparison(
        metric=name,
        mean_a=float(a.mean()) if len(a) else 0.0,
        mean_b=float(b.mean()) if len(b) else 0.0,
        delta=float((b - a).mean()) if len(a) else 0.0,
        p_randomization=randomization_test(a, b, permutations, seed),
        p_ttest=paired_t_test(a, b),
    )


def _disagreement(
    qid: str, value_a: float, value_b: float, run_a: Run, run_b: Run, dataset: Dataset, depth: int = 5
) -> Disagreement:
    judgments = dataset.qrels[qid]

    def top(run: Run) -> list[tuple[str, int | None]]:
        ranked = sort_run({qid: run.get(qid, [])}, depth)[qid]
        return [(docid, judgments.get(docid)) for docid, _ in ranked]

    relevant = dict(sorted(((d, g) for d, g in judgments.items() if g >= 1), key=lambda x: -x[1]))
    return Disagreement(
        qid, dataset.queries[qid], value_a, value_b, top(run_a), top(run_b), relevant
    )
