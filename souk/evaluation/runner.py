"""Run every query of a dataset through a pipeline, timing each, and score the run.

Latency is wall time of `pipeline.search` per query, one query at a time (no batching), so p50/p99
are what a user waits. One untimed warm-up query runs first (lazy model and cache loading), unless
`warmup=False`.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from souk.errors import ConfigError, SoukError
from souk.evaluation.datasets import Dataset
from souk.evaluation.metrics import DEFAULT_METRICS, PerQuery, score_run
from souk.evaluation.runs import Run
from souk.progress import progress_bar
from souk.ranking.pipeline import Pipeline
from souk.types import Ranking


class Searchable(Protocol):
    """Anything else `evaluate` can score: a ranking for a query text (a bench's wrapper, the served pages)."""

    def search(self, text: str, k: int) -> Ranking: ...


@dataclass(frozen=True)
class Evaluation:
    """One pipeline over one dataset: the run, per-query metrics, per-query latency (aligned)."""

    dataset: Dataset
    run: Run
    per_query: PerQuery
    latency_ms: np.ndarray  # aligned with per_query.qids
    k: int
    stage_ms: dict[str, np.ndarray] = field(default_factory=dict)  # per stage, aligned like latency_ms
    paths: dict[str, str] = field(default_factory=dict)  # the inference path a model stage ran on (its `path`)

    def summary(self) -> dict[str, Any]:
        """Mean metrics plus query counts and latency percentiles, ready for `--json`."""
        latency = self.latency_ms if len(self.latency_ms) else np.zeros(1)
        return {
            **self.per_query.means(),
            "queries": len(self.per_query.qids),
            "skipped": self.dataset.skipped,
            "p50_ms": float(np.percentile(latency, 50)),
            "p99_ms": float(np.percentile(latency, 99)),
            "mean_ms": float(latency.mean()),
            **({"stage_p50_ms": {n: float(np.percentile(v, 50)) for n, v in self.stage_ms.items()}}
               if self.stage_ms else {}),
            **({"stage_paths": dict(self.paths)} if self.paths else {}),
        }


def evaluate(
    pipeline: Pipeline | Searchable,
    dataset: Dataset,
    k: int = 100,
    metrics: Sequence[str] = DEFAULT_METRICS,
    progress: bool = True,
    warmup: bool = True,
) -> Evaluation:
    """Search every dataset query for its top `k`, then score the run on the dataset's qrels."""
    if k < 1:
        raise ConfigError(f"k must be a positive number of documents, got {k}")
    qids = list(dataset.qrels)  # the row order score_run uses, so latency stays aligned
    run: Run = {}
    latency = np.zeros(len(qids))
    label = f"evaluating {dataset.name or 'dataset'}/{dataset.split or '-'}"
    stage_ms: dict[str, np.ndarray] = {}
    if qids and warmup:
        _search(pipeline, dataset.queries[qids[0]], k)  # load lazy models/caches outside the timings
    with progress_bar(label, len(qids), enabled=progress) as advance:
        for row, qid in enumerate(qids):
            start = time.perf_counter()
            ranking, timings = _search(pipeline, dataset.queries[qid], k)
            latency[row] = (time.perf_counter() - start) * 1000.0
            for name, ms in timings.items():
                stage_ms.setdefault(name, np.zeros(len(qids)))[row] = ms
            if len(set(ranking.ids)) != len(ranking.ids):
                raise SoukError(f"the pipeline returned a document twice for query {qid}")
            run[qid] = list(zip(ranking.ids, np.asarray(ranking.scores, dtype=np.float64).tolist()))
            advance()
    per_query = score_run(run, dataset.qrels, metrics)
    paths = {step.name: step.stage.path for step in getattr(pipeline, "steps", [])
             if isinstance(getattr(step.stage, "path", None), str)}
    return Evaluation(dataset, run, per_query, latency, k, stage_ms, paths)


def _search(pipeline: Pipeline | Searchable, text: str, k: int) -> tuple[Ranking, dict[str, float]]:
    """The ranking and, for a souk Pipeline, the time each stage took."""
    if isinstance(pipeline, Pipeline):
        run = pipeline.run(pipeline.plan(text), k)
        return run.ranking, run.timings_ms
    return pipeline.search(text, k), {}
