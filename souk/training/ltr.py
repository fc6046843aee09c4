"""`souk fit --stages ltr`: LightGBM lambdarank over the recall candidates of judged queries.

For every train query the `ltr` pipeline's own query steps and the stages before `ltr` (hybrid recall, or
BM25 when the index has no vector field; the interaction model where one is fitted) give the candidates and
signals the stage will see at serving time (its `depth`, default 100), labelled with
their qrels grades (unjudged = 0) and described by `souk.ranking.features`. One model is trained on all
train queries, early-stopped on the dev split's nDCG@10 when one is given; then grouped K-fold by query on
train, each fold trained to the same number of rounds, gives an honest estimate (`cv`). Without a dev
split the rounds are the best of the K folds' mean validation curve (every train query validates once),
and the model is then trained on all of train; `cv` is then those folds (rounds chosen on them). The
model directory holds `model.txt`, the manifest (features, hyper-parameters, gains, curve, dev and CV nDCG@10 next to
recall's), `importance.png`, `curve.png` and `out_of_fold.json` (each train query's top 20 by the fold booster that
did not train on it: what a later fitter choosing on train queries must see, `write_out_of_fold`).
Hyper-parameters are few and fixed (never tuned on dev). Misuse: fitting on the split you report.
Under `souk fit --ray` (`job.workers`) with at least `RAY_MIN_ROWS` train rows (option `ray_min_rows`), the
boosters train in LightGBM's distributed mode on Ray (`souk.training.distributed.lightgbm_on_ray`: whole
queries per worker, the same seed, rounds and early stopping); features are still collected here.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import numpy as np

from souk.errors import ConfigError, DatasetError
from souk.evaluation.datasets import Dataset
from souk.plugins import option_check
from souk.progress import progress_bar
from souk.ranking.clicks import active_click_model
from souk.ranking.features import FeatureEnv, FeatureSet, default_groups
from souk.ranking.ltr import KIND, MODEL_FILE
from souk.ranking.pipeline import query_steps_of, stage_specs
from souk.training.fit import FitJob, register_fitter
from souk.training.kit import fit_searcher, ndcg10
from souk.types import Ranking

if TYPE_CHECKING:
    from souk.index.searcher import Searcher

PARAMS: dict[str, Any] = {
    "objective": "lambdarank", "metric": "ndcg", "eval_at": [10], "num_leaves": 31, "learning_rate": 0.05,
    "min_data_in_leaf": 50, "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0,
    "lambdarank_truncation_level": 20, "verbosity": -1, "deterministic": True, "force_row_wise": True,
    # one thread: on a shared 2-core machine LightGBM's OpenMP threads spin against other processes (100 rounds
    # on 1,400 rows took 52 s with 2 threads and 2.5 s with 1 under load); option `threads` overrides it
    "num_threads": 1,
}
MAX_ROUNDS = 2000
PATIENCE = 100
RAY_MIN_ROWS = 50_000  # train rows from which `souk fit --ray` trains ltr data-parallel (below: one process)
FOLDS = 5
BATCH = 256


@dataclass
class Judged:
    """Candidates of judged queries with their features and labels (rows of all queries stacked)."""

    qids: list[str] = field(default_factory=list)
    rankings: list[Ranking] = field(default_factory=list)
    blocks: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    seconds: float = 0.0
    complete: bool = True

    def trainable(self, keep: Iterable[int]) -> list[int]:
        """The positions in `keep` whose query has a relevant candidate (the rows `subset` stacks)."""
        return [i for i in keep if self.labels[i].max(initial=0) > 0]

    def subset(self, keep: np.ndarray | list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(X, y, group sizes) of the queries at positions `keep` that have a relevant candidate."""
        keep = self.trainable(keep)
        if not keep:
            return (
                np.zeros((0, self.blocks[0].shape[1] if self.blocks else 0), np.float32),
                np.zeros(0),
                np.zeros(0, np.int64),
            )
        return (np.concatenate([self.blocks[i] for i in keep]), np.concatenate([self.labels[i] for i in keep]),
                np.asarray([len(self.labels[i]) for i in keep], dtype=np.int64))

    def ndcg10(self, scores: list[np.ndarray] | None, qrels: dict[str, dict[str, int]],
               keep: list[int] | None = None) -> float:
        """Mean nDCG@10 (souk's metrics, every judged query counted) of the candidates ordered by `scores`
        (None: in recall order): what `souk eval` reports for the pipeline's top 10."""
        keep = list(range(len(self.qids))) if keep is None else keep
        run = {}
        for i in keep:
            r = self.rankings[i]
            s = -np.arange(len(r), dtype=np.float64) if scores is None else np.asarray(scores[i], dtype=np.float64)
            order = np.argsort(-s, kind="stable")
            run[self.qids[i]] = [(r.ids[j], float(len(order) - rank)) for rank, j in enumerate(order)]
        return ndcg10(run, {self.qids[i]: qrels[self.qids[i]] for i in keep})


def recall_for(searcher: Searcher) -> tuple[Any, Any, int, dict[str, Any]]:
    """The `ltr` pipeline's planner (its query steps), the stages before `ltr` as one pipeline (recall, and
    the interaction model where one is fitted) and the stage's depth, as serving builds them
    (`souk.ranking.pipeline.build_pipeline`), so training sees the candidates and signals serving will."""
    from souk.query.understand import planner_for
    from souk.ranking.pipeline import build_pipeline

    config = searcher.schema.pipelines
    specs = stage_specs("ltr", config)
    at = next((i for i, s in enumerate(specs) if s["stage"] == "ltr"), len(specs))
    recall_opts = {k: v for k, v in specs[0].items() if k != "stage"}
    depth = int(specs[at].get("depth", 100)) if at < len(specs) else 100
    planner = planner_for(searcher, query_steps_of("ltr", config, None, searcher.schema.query.get("steps")))
    prior = build_pipeline("ltr-candidates", searcher, {"stages": specs[:at]}, planner=planner)
    return planner, prior, depth, recall_opts


def collect(searcher: Searcher, features: FeatureSet, data: Dataset, deadline: float | None = None,
            progress: bool = True, what: str = "train", stages: tuple | None = None,
            judged_only: bool = False) -> Judged:
    """Candidates, features and labels of every query of `data` (stops early, `complete=False`, at `deadline`);
    `stages` is what `recall_for(searcher)` returns, built once by a caller that collects several splits.
    `judged_only` keeps the candidates with a judgment (labels from clicks: only shown documents were observed)."""
    planner, prior, depth, _ = stages or recall_for(searcher)
    out = Judged()
    t0 = time.monotonic()
    qids = list(data.queries)
    with progress_bar(f"ltr features ({what})", len(qids), enabled=progress) as advance:
        for start in range(0, len(qids), BATCH):
            if deadline is not None and time.monotonic() > deadline:
                out.complete = False
                break
            batch = qids[start:start + BATCH]
            plans = [planner.plan(data.queries[q]) for q in batch]
            for qid, plan, run in zip(batch, plans, prior.run_many(plans, depth)):
                head = run.ranking.top(depth)
                grades = data.qrels[qid]
                if judged_only:
                    head = head.take([i for i, d in enumerate(head.ids) if d in grades])
                    if not head.ids:
                        continue
                out.qids.append(qid)
                out.rankings.append(head)
                out.blocks.append(features.matrix(plan, head))
                out.labels.append(np.asarray([max(grades.get(i, 0), 0) for i in head.ids], dtype=np.float64))
            advance(len(batch))
    out.seconds = time.monotonic() - t0
    return out


def label_gain(top: float, linear: bool = False) -> list[float]:
    """LightGBM's gain per grade 0..`top` (2^grade - 1, at least two grades; `linear`: the grade itself, the gain
    souk's nDCG scores with, which differs where grades go past 1)."""
    return [float(i if linear else 2 ** i - 1) for i in range(max(int(top) + 1, 2))]


def train_booster(X, y, g, valid: tuple | None, rounds: int, params: dict[str, Any], deadline: float | None,
                  names: list[str], agree: Callable[[bool], bool] | None = None, every: int = 1, position=None):
    """One booster; with `valid`, the per-round nDCG@10 history of train and valid (the caller picks the best).
    The deadline is checked every `every` rounds, through `agree` when given (distributed: rank 0's clock).
    `position`: the logged position of each train row (labels from clicks, see `click_positions`)."""
    import lightgbm as lgb

    params = dict(params)
    if "label_gain" not in params:
        params["label_gain"] = label_gain(max(y.max(initial=0), valid[1].max(initial=0) if valid else 0))
    train = lgb.Dataset(X, y, group=g, feature_name=names, free_raw_data=False, position=position)
    sets, labels = [train], ["train"]
    if valid is not None:
        sets.append(lgb.Dataset(valid[0], valid[1], group=valid[2], reference=train))
        labels.append("valid")
    history: dict[str, Any] = {}
    callbacks = [lgb.record_evaluation(history)] if valid is not None else []
    stopped = {"budget": False}

    def budget(env) -> None:
        if deadline is None or env.iteration % every:
            return
        late = time.monotonic() > deadline
        if agree(late) if agree is not None else late:
            stopped["budget"] = True
            raise lgb.callback.EarlyStopException(env.iteration, env.evaluation_result_list or [])

    callbacks.append(budget)
    if valid is not None:
        callbacks.append(lgb.early_stopping(PATIENCE, first_metric_only=True, verbose=False))
    booster = lgb.train(params, train, num_boost_round=rounds, valid_sets=sets if valid is not None else None,
                        valid_names=labels if valid is not None else None, callbacks=callbacks)
    return booster, history, stopped["budget"]


def _boosted(tasks: Iterable[Any], params: dict[str, Any], names: list[str], deadline: float | None,
             job: FitJob, workers: int, min_left: float = 0.0) -> Iterator[tuple[Any, dict[str, Any], bool]]:
    """Each `BoosterTask` trained in turn, up to and including the first the deadline cut (and, in this
    process, none started with under `min_left` seconds left): on Ray over `workers` (LightGBM's distributed
    mode), else here."""
    if workers:
        from souk.training.distributed import lightgbm_on_ray

        tasks = list(tasks)
        top = max(max(t.y.max(initial=0), t.valid[1].max(initial=0) if t.valid else 0) for t in tasks)
        yield from lightgbm_on_ray(tasks, {"label_gain": label_gain(top), **params}, names, deadline, workers,
                                   job.workdir)
        return
    for t in tasks:
        if min_left and job.seconds_left < min_left:
            return
        done = train_booster(t.X, t.y, t.groups, t.valid, t.rounds, params, deadline, names, position=t.position)
        yield done
        if done[2]:
            return


def click_positions(train: Judged, data: Dataset, regularization: float | None) -> list[np.ndarray] | None:
    """Per collected query, the position the log first showed each candidate at, where the labels come from clicks
    (`souk.events.labels.ClickDataset`) and `regularization` is set: LightGBM then fits position-debiased lambdarank
    (Unbiased LambdaMART, Hu et al., WWW 2019; measured in `souk.events.labels`, `POSITION_BIAS`). None otherwise."""
    from souk.events.labels import ClickDataset

    if regularization is None or not isinstance(data, ClickDataset):
        return None
    return [data.shown_at(qid, list(ranking.ids)) for qid, ranking in zip(train.qids, train.rankings)]


def _rows(shown: list[np.ndarray] | None, train: Judged, keep: Any) -> np.ndarray | None:
    """The positions of the rows `train.subset(keep)` stacks (None without positions)."""
    if shown is None:
        return None
    kept = [shown[i] for i in train.trainable(keep)]
    return np.concatenate(kept) if kept else np.zeros(0, np.int32)


def _folds(n: int, k: int, seed: int) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(order[i::k]) for i in range(k)]


@dataclass
class LtrOptions:
    """The `ltr` fitter's options (`souk fit --option ltr.KEY=VALUE`)."""

    clicks: bool = True                  # a feature group from the active click model, where one exists
    features: list[str] | None = None    # feature groups (default: every group that applies)
    threads: int = PARAMS["num_threads"]
    judged_only: bool = False            # train on judged candidates only
    ray_min_rows: int = RAY_MIN_ROWS
    rounds: int | None = None            # boosting rounds fixed by the caller (default: early stopping)
    activate_anyway: bool = False        # activate without the dev/CV veto (labels from clicks alone)
    cv: bool = True                      # without a dev split: K-fold CV on train; false (needs `rounds`): none
    # labels from clicks: position-debiased lambdarank with this regularisation (see `click_positions`); null: off
    position_bias: float | None = field(default=None, metadata=option_check(lambda v: v is None or v >= 0, ">= 0"))
    # more boosters from other seeds while the budget holds (`seed_ensemble`); off by default: on held-out TRAIN
    # +0.002 (scifact) / +0.001 (qbqtc), within seed noise, dev 0.000-0.005 lower, and its trees cost serving time
    ensemble: bool = False
    # LightGBM's label gain linear in the grade (souk's nDCG) instead of 2^grade - 1; the same for 0/1 grades
    linear_gain: bool = False
    members: int = 5                     # an ensemble's boosters at most
    max_trees: int = 1500                # ... and their trees at most (serving time grows with them)


@register_fitter("ltr", order=40, share=1.0, options=LtrOptions)
def fit_ltr(job: FitJob) -> dict[str, Any]:
    """Fit the LightGBM lambdarank model of the `ltr` stage (see the module docstring)."""

    searcher = fit_searcher(job.index_path)
    models = {}
    clicks = active_click_model(job.index_path)
    if clicks is not None and job.options.get("clicks", True):
        models["clicks"] = clicks
    env = FeatureEnv.open(searcher, models)
    groups = job.options.get("features") or default_groups(env)
    if not isinstance(groups, list):
        raise ConfigError(f"ltr.features: expected a list of feature groups, got {groups!r}")
    features = FeatureSet(env, groups)
    names = features.columns
    stages = recall_for(searcher)
    depth, recall_opts = stages[2], stages[3]
    seed = job.seed
    params = {**PARAMS, "seed": seed, "num_threads": int(job.options.get("threads", PARAMS["num_threads"]))}
    started = time.monotonic()
    budget = max(job.seconds_left, 1.0)
    # features for train (at most half the budget) and dev
    # option `judged_only`: train on judged candidates only (on homedepot click labels it let unshown deep candidates
    # climb: dev nDCG@10 0.371 against 0.400 with every candidate, unjudged as 0)
    judged_only = bool(job.options.get("judged_only", False))
    train = collect(searcher, features, job.train, started + budget * 0.5, job.progress, "train", stages, judged_only)
    dev = collect(searcher, features, job.dev, None, job.progress, "dev", stages) if job.dev is not None else None
    positives = train.trainable(range(len(train.labels)))
    shown = click_positions(train, job.train, job.options.get("position_bias"))
    if shown is not None:
        params["lambdarank_position_bias_regularization"] = float(job.options["position_bias"])
    if job.options.get("linear_gain", False):
        seen = [a.max(initial=0) for judged in (train, dev) if judged is not None for a in judged.labels]
        params["label_gain"] = label_gain(max(seen, default=1), linear=True)
    if len(positives) < 10:
        raise DatasetError(f"only {len(positives)} train queries have a relevant document among the top {depth} "
                           "candidates; ltr needs judged queries that recall can find (at least 10)")
    all_train = list(range(len(train.qids)))

    def predict(judged: Judged, idx: list[int], model, rounds: int) -> list[np.ndarray]:
        scores = [np.zeros(0)] * len(judged.qids)
        for i in idx:
            scores[i] = (
                model.predict(judged.blocks[i], num_iteration=rounds, num_threads=1)
                if len(judged.blocks[i])
                else np.zeros(0)
            )
        return scores

    cv_ltr, cv_recall = [], []
    out_of_fold: dict[int, np.ndarray] = {}  # each train query's scores by the fold model that never saw it

    def score_fold(idx: list[int], model, rounds: int) -> None:
        scores = predict(train, idx, model, rounds)
        out_of_fold.update((i, scores[i]) for i in idx)
        cv_ltr.append(train.ndcg10(scores, job.train.qrels, idx))
        cv_recall.append(train.ndcg10(None, job.train.qrels, idx))

    X, y, g = train.subset(all_train)
    on_dev = False  # valid_ltr measured on the dev split (else: on train folds)
    # LightGBM's distributed mode takes no positions: labels from clicks train here
    workers = job.workers if len(y) >= int(job.options.get("ray_min_rows", RAY_MIN_ROWS)) and shown is None else 0
    from souk.training.distributed import BoosterTask

    def boosted(tasks: Iterable[Any], deadline: float | None, min_left: float = 0.0):
        return _boosted(tasks, params, names, deadline, job, workers, min_left)

    def task(keep: Any, valid: tuple | None, rounds: int) -> BoosterTask:
        return BoosterTask(*train.subset(keep), valid, rounds, position=_rows(shown, train, keep))

    if dev is not None and job.dev is not None and any(labels.max(initial=0) > 0 for labels in dev.labels):
        valid_idx, valid_name = list(range(len(dev.qids))), f"{job.dev.name}/{job.dev.split}"
        on_dev = True
        main = task(all_train, dev.subset(valid_idx), MAX_ROUNDS)
        [(booster, history, by_budget)] = boosted([main], job.deadline)
        curve_valid = list(history.get("valid", {}).get("ndcg@10", []))
        curve_train = list(history.get("train", {}).get("ndcg@10", []))
        best = int(np.argmax(curve_valid)) + 1 if curve_valid else booster.current_iteration()
        valid_ltr = dev.ndcg10(predict(dev, valid_idx, booster, best), job.dev.qrels, valid_idx)
        valid_recall = dev.ndcg10(None, job.dev.qrels, valid_idx)
        # grouped K-fold on train with the same number of rounds: an estimate no early stopping has seen
        folds_of = _folds(len(all_train), FOLDS, seed)
        tasks = (task(np.setdiff1d(all_train, fold).tolist(), None, best) for fold in folds_of)
        for fold, (model, _, cut) in zip(folds_of, boosted(tasks, job.deadline, min_left=5)):
            if cut:
                break
            score_fold(fold.tolist(), model, best)
    elif not job.options.get("cv", True):
        # option `cv` off (labels from clicks alone, `souk.events.labels.ltr_options`): the caller fixes the rounds
        # and activates without a veto, so a K-fold CV on click labels (which favours recall's order by
        # construction, see `activate` below) would only cost time; the report then has no held-out estimate
        if job.options.get("rounds") is None:
            raise ConfigError("ltr.cv=false needs ltr.rounds (the boosting rounds no validation can then choose)")
        valid_name, valid_idx, curve_valid, curve_train = "none (ltr.cv off, rounds fixed)", [], [], []
        best, by_budget, valid_ltr, valid_recall = int(job.options["rounds"]), False, math.nan, math.nan
        [(booster, _, _)] = boosted([task(all_train, None, best)], None)
    else:
        # no dev split: every train query validates once, in grouped K-fold; the rounds are the best of the
        # folds' mean curve (a held-out tenth of a small train set is a handful of queries: too noisy to stop on)
        valid_name, valid_idx = f"{FOLDS}-fold CV on train", all_train
        folds, curves, train_curves, by_budget = [], [], [], False
        held_out = [(fold, held) for fold in _folds(len(all_train), FOLDS, seed)
                    for held in [train.subset(fold.tolist())] if len(held[2])]
        tasks = (task(np.setdiff1d(all_train, fold).tolist(), held, MAX_ROUNDS) for fold, held in held_out)
        for (fold, _), (model, history, cut) in zip(held_out, boosted(tasks, job.deadline)):
            folds.append((fold.tolist(), model))
            curves.append(history["valid"]["ndcg@10"])
            train_curves.append(history["train"]["ndcg@10"])
            by_budget = by_budget or cut
            if cut:
                break
        if not folds:
            raise DatasetError("no fold of train has a judged query whose relevant document recall "
                               "finds; add judged queries")
        length = min(len(c) for c in curves)  # every fold ran at least this far (each ran PATIENCE past its own best)
        curve_valid = np.mean([c[:length] for c in curves], axis=0).tolist()
        curve_train = np.mean([c[:length] for c in train_curves], axis=0).tolist()
        best = int(job.options.get("rounds", int(np.argmax(curve_valid)) + 1))  # option `rounds`: fixed by the caller
        for idx, model in folds:
            score_fold(idx, model, best)
        valid_ltr, valid_recall = float(np.mean(cv_ltr)), float(np.mean(cv_recall))
        # the served model: all train, `best` rounds
        [(booster, _, _)] = boosted([task(all_train, None, best)], None)
    gains = dict(zip(names, booster.feature_importance("gain", iteration=best).astype(float).tolist()))
    model_text, members, single = booster.model_to_string(num_iteration=best), 1, valid_ltr
    # (labels from clicks: each member is position-debiased like the first, from the same logged positions)
    if job.options.get("ensemble", False) and not workers and not by_budget:
        most = min(int(job.options.get("members", 5)), int(job.options.get("max_trees", 1500)) // max(best, 1))
        texts = seed_ensemble(X, y, g, params, names, best, job, most, position=_rows(shown, train, all_train))
        if texts:
            model_text, members = merged_model([model_text] + texts), 1 + len(texts)
            if on_dev and dev is not None and job.dev is not None:  # the ensemble's own dev score
                from souk.models.lightgbm_text import load_booster

                merged = load_booster(model_text.encode("utf-8"))
                valid_ltr = dev.ndcg10(predict(dev, valid_idx, merged, merged.num_trees()), job.dev.qrels, valid_idx)
    (job.workdir / MODEL_FILE).write_text(model_text, encoding="utf-8")
    write_out_of_fold(job.workdir, train, out_of_fold)
    gains = dict(sorted(gains.items(), key=lambda kv: -kv[1]))
    _plot_importance(gains, job.workdir / "importance.png")
    _plot_curve(curve_train, curve_valid, best, valid_name, job.workdir / "curve.png")
    dev_metrics = {"ndcg@10": _rounded(valid_ltr), "recall_ndcg@10": _rounded(valid_recall), "on": valid_name,
                   "queries": len(valid_idx), **({"first_member_ndcg@10": _rounded(single)} if members > 1 else {})}
    return {
        "kind": KIND,
        "features": features.spec,
        "params": {**params, "max_rounds": MAX_ROUNDS, "patience": PATIENCE},
        "rounds_chosen_on": valid_name,
        "rounds": best,
        "members": members,
        "recall": recall_opts,
        "depth": depth,
        "dev": dev_metrics,
        "cv": {"folds": len(cv_ltr), "ndcg@10": _mean_sd(cv_ltr), "recall_ndcg@10": _mean_sd(cv_recall)},
        "train": {"queries": len(train.qids), "with_relevant": len(positives), "rows": int(len(y)),
                  "complete": train.complete, "feature_seconds": round(train.seconds, 1)},
        "gain": {k: round(v, 3) for k, v in gains.items()},
        "curve": {"train": [round(v, 4) for v in curve_train], "valid": [round(v, 4) for v in curve_valid]},
        "stopped_by_budget": by_budget or not train.complete,
        **({"distributed": {"engine": "lightgbm data-parallel on ray-train", "workers": workers, "tree_learner": "data",
                            "shards": "whole queries, round-robin"}} if workers else {}),
        # a model that loses to its own candidates' order on the early-stopping split stays inactive
        # (option `activate_anyway`: labels from clicks exist only for the documents recall showed, so a CV on them
        # favours recall's order by construction and cannot judge the model; `souk fit --events` activates it)
        "activate": valid_ltr >= valid_recall - 0.002 or bool(job.options.get("activate_anyway", False)),
    }


OUT_OF_FOLD_FILE = "out_of_fold.json"
OUT_OF_FOLD_DEPTH = 20  # what the `full` preset hands the cross stage (`souk.training.cross.RERANK_DEPTH`)


def write_out_of_fold(workdir: Path, train: Judged, scores: dict[int, np.ndarray],
                      depth: int = OUT_OF_FOLD_DEPTH) -> int:
    """`OUT_OF_FOLD_FILE`: for every train query the K-fold scored, its top `depth` candidates and their scores by
    the fold booster that did not train on it, i.e. what the ltr stage hands a later stage for a query it never saw.
    A later fitter choosing something on train queries (the cross-encoder's mix weight) reads these, not the served
    model's scores: those queries trained the served model, whose order there is too good (scifact: held-out
    train prior 0.965 against 0.759 on dev, so no mix could win). Returns the queries written; with none (a fit
    without K-fold CV, e.g. from clicks) no file is written and a later fitter falls back to the served model."""
    import json

    out = {}
    for i, s in scores.items():
        if not len(s):
            continue
        top = np.argsort(-s, kind="stable")[:depth]
        out[train.qids[i]] = {"ids": [train.rankings[i].ids[j] for j in top],
                              "scores": [round(float(s[j]), 5) for j in top]}
    if not out:
        return 0
    (Path(workdir) / OUT_OF_FOLD_FILE).write_text(json.dumps({"depth": depth, "queries": out}), encoding="utf-8")
    return len(out)


def seed_ensemble(X, y, g, params: dict[str, Any], names: list[str], rounds: int, job: FitJob,
                  members: int, position: np.ndarray | None = None) -> list[str]:
    """Option `ensemble`: up to `members - 1` more boosters (`fit_ltr` caps `members` so that all hold at most
    `max_trees` trees: scoring 100 candidates took 3.4 ms with 420 trees, 14 ms with 1,260, 32 ms with 2,100 on two
    loaded cores) on the same rows and `rounds`, each from another seed
    (its bagging and feature sampling), trained while the budget holds one more (timed on the first); their
    model texts. Averaging them with the first lowers the variance between seeds (held-out TRAIN in README).
    `position`: the rows' logged positions (labels from clicks), debiased in every member as in the first."""
    out: list[str] = []
    t0 = time.monotonic()
    for k in range(1, members):
        spent = (time.monotonic() - t0) / max(len(out), 1)
        if job.seconds_left < 1.5 * spent + 5:
            break
        booster, _, cut = train_booster(X, y, g, None, rounds, {**params, "seed": params["seed"] + 1000 * k},
                                        job.deadline, names, position=position)
        if cut:
            break
        out.append(booster.model_to_string(num_iteration=rounds))
    return out


def merged_model(texts: list[str]) -> str:
    """One LightGBM text model scoring the mean of `texts`' models (same features): every tree of each, its leaf
    values divided by their number. Misuse: merging models over different feature lists (refused)."""
    from souk.models.lightgbm_text import canonical_text, parse_model

    models = [parse_model(t) for t in texts]
    first = models[0]
    if any(m.feature_names != first.feature_names or m.objective != first.objective for m in models[1:]):
        raise ConfigError("merged_model: the models score different features")
    share = 1.0 / len(models)
    trees = []
    for m in models:
        for tree in m.trees:
            for key in ("leaf_value", "internal_value"):
                if key in tree.arrays:
                    tree.arrays[key] = [v * share for v in tree.arrays[key]]
            trees.append(tree)
    infos = [_widest([m.feature_infos[i] for m in models]) for i in range(first.num_features)]
    return canonical_text(type(first)(first.objective, first.max_feature_idx, first.feature_names, infos, trees))


def _widest(infos: list[str]) -> str:
    """The feature range `[lo:hi]` covering each model's (`none` where none saw the feature vary)."""
    ranges = [tuple(float(v) for v in i[1:-1].split(":")) for i in infos if i != "none"]
    if not ranges:
        return "none"
    return f"[{min(r[0] for r in ranges)!r}:{max(r[1] for r in ranges)!r}]"


def _rounded(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 4)  # NaN: no held-out estimate (option `cv` off)


def _mean_sd(values: list[float]) -> dict[str, float] | None:
    return {"mean": round(float(np.mean(values)), 4), "sd": round(float(np.std(values)), 4)} if values else None


def _plot_importance(gains: dict[str, float], path: Path, top: int = 30) -> None:
    from souk.evaluation.report import plot_bars

    plot_bars(path, dict(list(gains.items())[:top]), "ltr feature importance (total gain)", "gain")


def _plot_curve(train: list[float], valid: list[float], best: int, valid_name: str, path: Path) -> None:
    from souk.evaluation.report import plot_curve

    series = {**({"train (candidates)": (range(1, len(train) + 1), train)} if train else {}),
              **({f"valid: {valid_name}": (range(1, len(valid) + 1), valid)} if valid else {})}
    plot_curve(path, series, "ltr training: LightGBM nDCG@10 over candidates", "boosting round", "nDCG@10", kept=best,
               kept_label=f"kept {best} rounds")
