"""The training kit every fitter shares: query splits and samples, recall candidates, the one nDCG@10, the
dev evaluator the one loop (`loop.train`) early-stops on, and the curve every fitter draws.

`DevEvaluator` is what sentence-transformers' evaluators are: calling it measures the model now on held-out
queries; `primary_metric` names the number and `greater_is_better` its direction, so the loop keeps the best
checkpoint either way. `ranking_evaluator(qrels, ranks)` is nDCG@10 of the run `ranks()` returns.
Misuse: an evaluator that reads the training queries (early stopping must score held-out ones).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from souk.errors import ConfigError
from souk.evaluation.datasets import Dataset
from souk.evaluation.metrics import score_run

Run = dict[str, list[tuple[str, float]]]
Heads = dict[str, tuple[list[str], np.ndarray]]  # each query's candidate ids and their scores, in recall order


# ---------------------------------------------------------------- splits and samples

def subset(data: Dataset, qids: Sequence[str], split: str) -> Dataset:
    """The queries `qids` of `data` (with their judgments) as a dataset named `split`."""
    return Dataset({q: data.queries[q] for q in qids}, {q: data.qrels[q] for q in qids}, 0, data.name, split)


def split_train(data: Dataset, share: float, cap: int, rng: np.random.Generator) -> tuple[Dataset, Dataset]:
    """(train, held out): a seeded share of the judged queries, at most `cap`, held out (for choosing a mix
    or, without a dev split, for early stopping). Misuse: a held-out part scored after training on it."""
    qids = sorted(data.qrels)
    n = min(cap, int(round(len(qids) * share)))
    if n < 1 or n >= len(qids):
        raise ConfigError(f"training split {data.split!r} has {len(qids)} judged queries; too few to hold some out")
    held = set(rng.choice(qids, size=n, replace=False).tolist())
    return (subset(data, [q for q in qids if q not in held], data.split),
            subset(data, [q for q in qids if q in held], f"{data.split} (held out)"))


def sample(data: Dataset, cap: int, rng: np.random.Generator) -> Dataset:
    """At most `cap` judged queries of `data`, a seeded sample when there are more (dev sets for early stopping)."""
    qids = sorted(data.qrels)
    if len(qids) <= cap:
        return data
    return subset(data, sorted(rng.choice(qids, size=cap, replace=False).tolist()), data.split)


def hold_out(qids: Sequence[str], share: float, rng: random.Random, least: int = 1) -> tuple[list[str], list[str]]:
    """(kept, held): `qids` shuffled by `rng`, the first `max(least, share of them)` held (none when share is 0
    and least is 0). Misuse: passing a shared rng whose later draws must not move (it shuffles once)."""
    order = list(qids)
    rng.shuffle(order)
    n = max(least, int(len(order) * share)) if share > 0 else least
    return order[n:], order[:n]


# ---------------------------------------------------------------- candidates

def fit_searcher(index_path: Path) -> Any:
    """A searcher of the index's last commit whose plain BM25 is read from the impacts from the first query on
    (`Searcher.prepare_bm25`, built now): otherwise they are built in a thread once features open the term store,
    and queries before and after the switch get BM25 sums in another float order, so one seed gave two models.
    Misuse: `Index.open(path).searcher()` in a fit stage."""
    from souk.index import Index

    searcher = Index.open(index_path).searcher()
    searcher.prepare_bm25()
    return searcher


def prior_pipeline(searcher: Any, stage: str = "cross", preset: str = "full") -> Any:
    """The stages of pipeline `preset` other than `stage` (optional stages no module registers left out),
    built as one pipeline: the candidates `stage` reorders when it serves."""
    from souk.ranking.pipeline import build_pipeline, stage_specs
    from souk.ranking.stage import STAGES

    known = set(STAGES.names())
    specs = [s for s in stage_specs(preset, searcher.schema.pipelines)
             if s["stage"] != stage and (s["stage"] in known or not s.get("optional"))]
    return build_pipeline(f"{stage}-prior", searcher, {"stages": specs})


def candidates(pipeline: Any, queries: dict[str, str], depth: int, progress: bool = False) -> Heads:
    """Top `depth` ids and scores of `pipeline` for each query, in batches of 64."""
    from souk.progress import progress_bar

    out: Heads = {}
    qids = list(queries)
    with progress_bar("recall for training", len(qids), enabled=progress) as advance:
        for start in range(0, len(qids), 64):
            part = qids[start:start + 64]
            runs = pipeline.run_many([pipeline.plan(queries[q]) for q in part], depth)
            for qid, run in zip(part, runs):
                head = run.ranking.top(depth)
                out[qid] = (head.ids, np.asarray(head.scores, dtype=np.float32))
            advance(len(part))
    return out


# ---------------------------------------------------------------- the one nDCG and the dev evaluator

def ndcg10(run: Run, qrels: dict[str, dict[str, int]]) -> float:
    """Mean nDCG@10 of `run` over the judged queries of `qrels` (souk's metrics: what `souk eval` reports;
    judged queries the run lacks score 0; no judged query: 0)."""
    return float(score_run(run, qrels, ["ndcg@10"]).means()["ndcg@10"]) if qrels else 0.0


def reordered(heads: Heads, scores: dict[str, np.ndarray], qrels: dict[str, dict[str, int]]) -> Run:
    """The run of each judged query's head scored by `scores` (queries without a head are left out)."""
    return {q: list(zip(heads[q][0], scores[q].astype(np.float64).tolist())) for q in qrels if q in heads}


@dataclass(frozen=True)
class DevEvaluator:
    """A held-out metric the loop early-stops on: `evaluator()` measures the model as it is now."""

    measure: Callable[[], float]
    primary_metric: str = "ndcg@10"
    greater_is_better: bool = True
    start: float | None = None  # the starting model's value when the caller measured it (the loop then does not)

    def __call__(self) -> float:
        return float(self.measure())

    def better(self, value: float, than: float) -> bool:
        """Whether `value` beats `than` in this metric's direction."""
        return value > than if self.greater_is_better else value < than

    def wrapped(self, wrap: Callable[[Callable[[], float]], Callable[[], float]]) -> "DevEvaluator":
        """The same metric measured through `wrap` (e.g. on rank 0 only, broadcast: `Replica.from_rank0`)."""
        return replace(self, measure=wrap(self.measure))


def ranking_evaluator(qrels: dict[str, dict[str, int]], ranks: Callable[[], Run]) -> DevEvaluator:
    """nDCG@10 over `qrels` of the run `ranks()` makes with the model being trained."""
    return DevEvaluator(lambda: ndcg10(ranks(), qrels))


def as_evaluator(evaluate: DevEvaluator | Callable[[], float] | None) -> DevEvaluator | None:
    """A plain `() -> float` (higher is better) as a `DevEvaluator`; evaluators and None pass through."""
    if evaluate is None or isinstance(evaluate, DevEvaluator):
        return evaluate
    return DevEvaluator(evaluate, "dev", True)


# ---------------------------------------------------------------- the curve

def write_curve(curve: list[dict[str, Any]], path: Path, title: str, metric: str = "nDCG@10",
                best_step: int | None = None, lines: dict[str, float] | None = None, xlabel: str = "step") -> None:
    """The loop's curve (`LoopResult.curve`: dev metric and loss by step, phases) as one PNG through
    `souk.evaluation.report.plot_curve`."""
    from souk.evaluation.report import plot_curve

    steps = [c["step"] for c in curve]
    losses = [(c["step"], c["loss"]) for c in curve if c.get("loss") is not None]
    plot_curve(path, {f"dev {metric}": (steps, [c["dev"] for c in curve])}, title, xlabel, f"dev {metric}",
               kept=best_step, kept_label=f"kept {xlabel} {best_step}", lines=lines,
               loss=(tuple(s for s, _ in losses), tuple(v for _, v in losses)) if losses else None,
               notes=[(c["step"], c["dev"], c["phase"]) for c in curve if c["phase"] != "start"])


def epoch_curve(values: Sequence[float], best_step: int, steps_per_epoch: int) -> tuple[list[float], int]:
    """(dev metric after each epoch, 0 being the starting model; the epoch kept) of a loop run that evaluated
    once per epoch (`LoopResult.values`, `.best_step`); a last epoch cut short by the deadline counts."""
    return [float(v) for v in values], -(-best_step // max(steps_per_epoch, 1))


def write_epoch_curve(values: Sequence[float], best_epoch: int, label: str, title: str, path: Path,
                      lines: dict[str, float] | None = None) -> None:
    """A curve of one dev value per epoch (0: before training) with the kept epoch marked, as one PNG."""
    from souk.evaluation.report import plot_curve

    plot_curve(path, {label: (list(range(len(values))), list(values))}, title, "epoch", "nDCG@10", kept=best_epoch,
               kept_label=f"kept epoch {best_epoch}", lines=lines)


HELD_OUT_SEED = 20221  # a constant, not the fit's seed: the same slice for every arm and every run


def held_out_train(data: Dataset, share: float = 0.2, cap: int = 300) -> tuple[Dataset, Dataset]:
    """(train, held-out train): a fixed slice of the train queries (the same whatever the fit's seed) that an
    ablation's fitters never see, so each idea is judged on train queries no arm learned from.
    Misuse: handing the held-out part to a fitter (pass the first part as the fit's train split)."""
    return split_train(data, share, cap, np.random.default_rng(HELD_OUT_SEED))
