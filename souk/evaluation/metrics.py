"""Ranking and classification metrics, each a small function in a registry keyed by name.

Ranking metrics follow trec_eval exactly: a run is ordered by score desc then docid desc; a
document is relevant when its grade is >= 1; nDCG uses linear gain (the grade) with a
1/log2(rank + 1) discount and the ideal ranking of all the query's judged grades. They work on a
`Judged` matrix (one row per query) so a metric is a few numpy reductions, never a loop per
document. Queries missing from a run score 0 (like `trec_eval -c`).

Names are `base@k` ("ndcg@10", "recall@100") or `base` for the whole ranking ("map", "ndcg").
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from souk.errors import ConfigError, DatasetError
from souk.evaluation.datasets import Qrels
from souk.evaluation.runs import Run, trec_order
from souk.plugins import Registry

DEFAULT_METRICS: tuple[str, ...] = (
    "ndcg@10", "recall@100", "mrr@10", "map", "precision@10", "judged@10",
)


@dataclass(frozen=True)
class Judged:
    """The judgments of a run, one row per query, columns are ranks 1..depth.

    `grades[q, r]` is the grade of the document at rank r+1 (0 when unjudged or past the end of
    the ranking); `judged` marks ranks holding a judged document; `ideal` holds each query's
    positive grades sorted descending; `n_relevant` counts grades >= 1.
    """

    qids: list[str]
    grades: np.ndarray  # (Q, longest ranking) int32
    judged: np.ndarray  # (Q, longest ranking) bool
    ideal: np.ndarray  # (Q, most relevant documents) int32
    n_relevant: np.ndarray  # (Q,) int

    @property
    def relevant(self) -> np.ndarray:
        return self.grades >= 1


def judge(run: Run, qrels: Qrels) -> Judged:
    """Join a run with the qrels of every judged query (rows in `qrels` order)."""
    qids = list(qrels)
    rows = [_judge_query(run.get(qid, []), qrels[qid]) for qid in qids]
    positive = [np.fromiter(qrels[qid].values(), dtype=np.int32) for qid in qids]
    ideal = _pad([-np.sort(-p[p > 0]) for p in positive], np.int32)
    return Judged(
        qids=qids,
        grades=_pad([grades for grades, _ in rows], np.int32),
        judged=_pad([hit for _, hit in rows], bool),
        ideal=ideal,
        n_relevant=(ideal >= 1).sum(axis=1),
    )


def _judge_query(ranked: list[tuple[str, float]], judgments: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Grade of each ranked document (0 when unjudged) and whether it is judged, in trec order."""
    docs, _ = trec_order(ranked)
    if not judgments:
        return np.zeros(len(docs), dtype=np.int32), np.zeros(len(docs), dtype=bool)
    keys = np.asarray(list(judgments), dtype=str)
    values = np.fromiter(judgments.values(), dtype=np.int32, count=len(judgments))
    order = np.argsort(keys)
    keys, values = keys[order], values[order]
    pos = np.searchsorted(keys, docs).clip(max=len(keys) - 1)
    hit = keys[pos] == docs
    return np.where(hit, values[pos], 0), hit


def _pad(rows: list[np.ndarray], dtype: type) -> np.ndarray:
    """Rows of different lengths as one zero-padded matrix."""
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    matrix = np.zeros((len(rows), lengths.max(initial=0)), dtype=dtype)
    matrix[np.arange(matrix.shape[1]) < lengths[:, None]] = np.concatenate(rows) if rows else []
    return matrix


# ---------------------------------------------------------------- ranking metrics

RankingMetric = Callable[[Judged, int | None], np.ndarray]
RANKING_METRICS: Registry[RankingMetric] = Registry("ranking_metric")
_NEEDS_CUTOFF: set[str] = set()


def ranking_metric(name: str, needs_cutoff: bool = False) -> Callable[[RankingMetric], RankingMetric]:
    """Register `fn(judged, k) -> per-query values` in `RANKING_METRICS` as `name`; k is None for the whole
    ranking; `needs_cutoff`: the name is only valid with `@k`."""

    def register(fn: RankingMetric) -> RankingMetric:
        RANKING_METRICS.register(name, fn)
        if needs_cutoff:
            _NEEDS_CUTOFF.add(name)
        return fn

    return register


def parse_metric(name: str) -> tuple[str, int | None]:
    """Split "ndcg@10" into ("ndcg", 10); ValueError names the known metrics."""
    base, _, cut = name.partition("@")
    if base not in RANKING_METRICS:
        raise ConfigError(f"unknown metric {name!r}; known: {', '.join(RANKING_METRICS.names())} (add @k)")
    if cut and not (cut.isdigit() and int(cut) > 0):
        raise ConfigError(f"metric {name!r}: the cutoff after @ must be a positive integer")
    if not cut and base in _NEEDS_CUTOFF:
        raise ConfigError(f"metric {name!r} needs a cutoff, e.g. {base}@10")
    return base, int(cut) if cut else None


def compute(judged: Judged, names: Iterable[str]) -> dict[str, np.ndarray]:
    """Per-query values of each named metric, aligned with `judged.qids`."""
    parsed = {name: parse_metric(name) for name in names}
    return {name: RANKING_METRICS.get(base)(judged, k) for name, (base, k) in parsed.items()}


def _cut(matrix: np.ndarray, k: int | None) -> np.ndarray:
    return matrix if k is None else matrix[:, :k]


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)


def _discount(width: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, width + 2))


@ranking_metric("ndcg")
def ndcg(judged: Judged, k: int | None) -> np.ndarray:
    """nDCG with linear gain, trec_eval's `ndcg_cut.k` (`ndcg` without k)."""
    gains = _cut(judged.grades, k).clip(min=0)
    ideal = _cut(judged.ideal, k)
    dcg = gains @ _discount(gains.shape[1])
    return _safe_divide(dcg, ideal @ _discount(ideal.shape[1]))


@ranking_metric("map")
def average_precision(judged: Judged, k: int | None) -> np.ndarray:
    """Average precision over all relevant documents (trec_eval `map`, `map_cut.k`)."""
    relevant = _cut(judged.relevant, k)
    ranks = np.arange(1, relevant.shape[1] + 1)
    precision_at_hits = np.where(relevant, relevant.cumsum(axis=1) / ranks, 0.0)
    return _safe_divide(precision_at_hits.sum(axis=1), judged.n_relevant)


@ranking_metric("mrr")
def reciprocal_rank(judged: Judged, k: int | None) -> np.ndarray:
    """1 / rank of the first relevant document within the top k (trec_eval `recip_rank`)."""
    relevant = _cut(judged.relevant, k)
    first = relevant.argmax(axis=1) + 1.0
    return np.where(relevant.any(axis=1), 1.0 / first, 0.0)


@ranking_metric("recall")
def recall(judged: Judged, k: int | None) -> np.ndarray:
    """Share of the relevant documents found in the top k (trec_eval `recall.k`)."""
    return _safe_divide(_cut(judged.relevant, k).sum(axis=1), judged.n_relevant)


@ranking_metric("precision", needs_cutoff=True)
def precision(judged: Judged, k: int | None) -> np.ndarray:
    """Relevant documents in the top k over k, even when fewer were retrieved (trec_eval `P.k`)."""
    assert k is not None  # needs_cutoff: always given one
    return _cut(judged.relevant, k).sum(axis=1) / float(k)


@ranking_metric("judged", needs_cutoff=True)
def judged_at(judged: Judged, k: int | None) -> np.ndarray:
    """Share of the top k that carry a judgment; low values mean the other numbers are shaky."""
    assert k is not None  # needs_cutoff: always given one
    return _cut(judged.judged, k).sum(axis=1) / float(k)


@dataclass(frozen=True)
class PerQuery:
    """Per-query metric values of one run over one set of judged queries."""

    qids: list[str]
    values: dict[str, np.ndarray]
    missing: int = 0  # judged queries the run has no ranking for (they score 0)

    def means(self) -> dict[str, float]:
        return {name: float(v.mean()) if len(v) else 0.0 for name, v in self.values.items()}


def score_run(run: Run, qrels: Qrels, names: Sequence[str] = DEFAULT_METRICS) -> PerQuery:
    """Score `run` on every query of `qrels` (pass `Dataset.qrels`: queries with a relevant
    judgment); the run's queries without judgments are ignored, judged ones it lacks score 0."""
    judged = judge(run, qrels)
    missing = sum(1 for qid in qrels if not run.get(qid))
    return PerQuery(judged.qids, compute(judged, names), missing)


# ---------------------------------------------------------------- classification metrics

ClassificationMetric = Callable[[np.ndarray, np.ndarray], float]
CLASSIFICATION_METRICS: Registry[ClassificationMetric] = Registry("classification_metric")


def classification_scores(y_true: Sequence, y_pred: Sequence, names: Iterable[str]) -> dict[str, float]:
    """Each named classification metric; ValueError names the known ones."""
    unknown = [n for n in names if n not in CLASSIFICATION_METRICS]
    if unknown:
        raise ConfigError(f"unknown metric {unknown[0]!r}; known: {', '.join(CLASSIFICATION_METRICS.names())}")
    return {n: CLASSIFICATION_METRICS.get(n)(np.asarray(y_true), np.asarray(y_pred)) for n in names}


def confusion_matrix(
    y_true: ArrayLike, y_pred: ArrayLike, labels: Sequence | None = None
) -> tuple[list, np.ndarray]:
    """Labels and the matrix whose [i, j] counts items of label i predicted as label j."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise DatasetError(f"y_true has {len(y_true)} items but y_pred has {len(y_pred)}")
    names = np.unique(np.concatenate([y_true, y_pred])) if labels is None else np.asarray(labels)
    true_idx, pred_idx = _label_index(names, y_true), _label_index(names, y_pred)
    n = len(names)
    matrix = np.bincount(true_idx * n + pred_idx, minlength=n * n).reshape(n, n)
    return names.tolist(), matrix


def _label_index(names: np.ndarray, values: np.ndarray) -> np.ndarray:
    order = np.argsort(names)
    index = order[np.searchsorted(names, values, sorter=order).clip(max=len(names) - 1)]
    unknown = names[index] != values
    if unknown.any():
        raise DatasetError(f"label {values[unknown][0].item()!r} is not among the labels given")
    return index


def per_class(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support of each label (0 where undefined)."""
    labels, matrix = confusion_matrix(y_true, y_pred)
    p, r, f = _prf(matrix)
    support = matrix.sum(axis=1)
    return {
        str(label): {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                     "support": int(support[i])}
        for i, label in enumerate(labels)
    }


def _prf(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tp = np.diag(matrix).astype(np.float64)
    p = _safe_divide(tp, matrix.sum(axis=0))
    r = _safe_divide(tp, matrix.sum(axis=1))
    return p, r, _safe_divide(2 * p * r, p + r)


@CLASSIFICATION_METRICS.register("accuracy")
def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float((y_true == y_pred).mean()) if len(y_true) else 0.0


@CLASSIFICATION_METRICS.register("macro_f1")
def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean F1 over the labels seen in y_true or y_pred (sklearn's `average="macro"`)."""
    _, matrix = confusion_matrix(y_true, y_pred)
    return float(_prf(matrix)[2].mean()) if matrix.size else 0.0


def best_f1_threshold(y_true: Sequence[bool], scores: ArrayLike) -> tuple[float, float]:
    """(threshold, F1) maximizing F1 when predicting positive for `score >= threshold`."""
    positive = np.asarray(y_true, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    if positive.shape != scores.shape or not positive.any():
        raise DatasetError("best_f1_threshold needs one score per label and at least one positive")
    order = np.argsort(-scores, kind="stable")
    sorted_scores, hits = scores[order], positive[order]
    last_of_value = np.r_[sorted_scores[1:] != sorted_scores[:-1], True]
    tp = hits.cumsum()[last_of_value]
    predicted = np.arange(1, len(scores) + 1)[last_of_value]
    f1 = 2 * tp / (predicted + positive.sum())
    best = int(f1.argmax())
    return float(sorted_scores[last_of_value][best]), float(f1[best])
