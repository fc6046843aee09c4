"""Evaluation: how good is a ranking, and did a change help? Numbers agree with trec_eval.

`load_beir` -> `evaluate(pipeline, dataset)` -> `Evaluation.summary()`, `write_run`,
`write_report`; `compare_runs` for paired significance between two runs.
"""
from souk.evaluation.compare import Comparison, compare_runs
from souk.evaluation.datasets import (
    Dataset,
    iter_beir_corpus,
    load_beir,
    load_beir_qrels,
    load_jsonl_queries,
    load_trec_qrels,
)
from souk.evaluation.metrics import DEFAULT_METRICS, PerQuery, score_run
from souk.evaluation.report import write_report
from souk.evaluation.runner import Evaluation, evaluate
from souk.evaluation.runs import Run, read_run, sort_run, write_run

__all__ = [
    "DEFAULT_METRICS", "Comparison", "Dataset", "Evaluation", "PerQuery", "Run", "compare_runs",
    "evaluate", "iter_beir_corpus", "load_beir", "load_beir_qrels", "load_jsonl_queries",
    "load_trec_qrels", "read_run", "score_run", "sort_run", "write_report", "write_run",
]
