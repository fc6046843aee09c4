"""`souk eval --ray`: the judged queries split over Ray workers, their runs merged and scored once.

Each worker opens the index (a path every node can read: a shared disk, or a Milvus server for vectors;
a Milvus Lite file serves one process at a time), builds the same pipeline and runs its share of the
queries exactly as `evaluate` does; the driver merges the runs (each query is searched independently, so
the metrics are those of the single-process run) and the per-query latencies.

Misuse to avoid: comparing its latencies with a single-process run's (workers share the machine).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from souk.evaluation.datasets import Dataset
from souk.evaluation.metrics import DEFAULT_METRICS, score_run
from souk.evaluation.runner import Evaluation, evaluate

WORKER_CPUS = 1.0


def _shard(index: str, pipeline: str, dataset: Dataset, k: int) -> dict[str, Any]:
    from souk.index import Index
    from souk.ranking.pipeline import build_pipeline

    ev = evaluate(build_pipeline(pipeline, Index.open(index)), dataset, k=k, metrics=["ndcg@10"], progress=False)
    return {"run": ev.run, "qids": list(ev.per_query.qids), "latency": ev.latency_ms,
            "stages": {n: v for n, v in ev.stage_ms.items()}}


def evaluate_on_ray(index: str | Path, pipeline: str, dataset: Dataset, k: int = 100,
                    metrics: Sequence[str] = DEFAULT_METRICS, workers: int | None = None) -> Evaluation:
    """`evaluate` with the queries split over `workers` Ray tasks (default: the cluster's CPUs)."""
    from souk.index.vectors.ray_encoding import _ray

    ray = _ray()
    qids = list(dataset.qrels)
    n = max(1, min(workers or int(ray.cluster_resources().get("CPU", 1)), len(qids) or 1))
    task = ray.remote(num_cpus=WORKER_CPUS)(_shard)
    shards = [qids[i::n] for i in range(n)]
    futures = [task.remote(str(Path(index).resolve()), pipeline,
                           replace(dataset, queries={q: dataset.queries[q] for q in s},
                                   qrels={q: dataset.qrels[q] for q in s}), k)
               for s in shards if s]
    run: dict[str, list[tuple[str, float]]] = {}
    latency: dict[str, float] = {}
    stages: dict[str, dict[str, float]] = {}
    for part in ray.get(futures):
        run.update(part["run"])
        for i, q in enumerate(part["qids"]):
            latency[q] = part["latency"][i]
            for name, values in part["stages"].items():
                stages.setdefault(name, {})[q] = values[i]
    per_query = score_run(run, dataset.qrels, metrics)
    order = list(per_query.qids)
    return Evaluation(dataset, run, per_query, np.asarray([latency.get(q, 0.0) for q in order]), k,
                      {name: np.asarray([v.get(q, 0.0) for q in order]) for name, v in stages.items()})
