"""Fitter `fusion`: stacking fusion (option `fusion.stacking`), a LightGBM ranker over the recall lists.

For the train queries, the learned recall (the `full` preset's recall stage: BM25, dense and wordvec where
they apply) gives each retriever's list and the fixed fusion of them; `souk.retrieval.fusion.stack_features`
describes every fused candidate (each list's raw and min-max score, rank, whether it found the document; the
fixed fusion's score and rank) and LightGBM lambdarank learns to order them, starting from the fixed
fusion's score (times `prior`: the trees learn corrections to it), early-stopped on dev (or the held-out
part). A seeded part of TRAIN is held out: the model is activated only when its nDCG@10 there beats the
fixed fusion's by `min_gain`; otherwise it is published inactive and the fixed fusion serves
(`souk.ranking.stacking`). With `stacking = false` nothing is trained and any active model is set aside.
Misuse: comparing on dev (dev early-stops the booster; held-out TRAIN decides).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from souk.errors import DatasetError
from souk.evaluation.datasets import Dataset
from souk.plugins import option_check
from souk.ranking.stacking import KIND, STAGE
from souk.training.fit import FitJob, register_fitter
from souk.training.kit import fit_searcher, ndcg10, sample, split_train

STACKING = False  # on by default only where it wins on held-out TRAIN queries (see the fit report)
PARAMS: dict[str, Any] = {
    "objective": "lambdarank", "metric": "ndcg", "eval_at": [10], "num_leaves": 15, "learning_rate": 0.05,
    "min_data_in_leaf": 20, "feature_fraction": 0.9, "lambda_l2": 1.0, "verbosity": -1, "deterministic": True,
    "force_row_wise": True, "num_threads": 1,
}


@dataclass
class FusionOptions:
    """The `fusion` fitter's options (`souk fit --option fusion.KEY=VALUE`)."""

    stacking: bool = STACKING
    queries: int = field(default=3000, metadata=option_check(lambda v: v >= 20, "at least 20"))  # train sample
    held_out: float = field(default=0.2, metadata=option_check(lambda v: 0 < v < 1, "a share between 0 and 1"))
    held_out_max: int = 300
    dev_max: int = 500
    rounds: int = 400
    patience: int = 40
    min_gain: float = 0.002
    prior: float = 5.0  # the fixed fusion's score times this is where boosting starts (0: from nothing)


def applies(schema: Any) -> bool:
    """Indexes that fuse several lists: those with a vector field (BM25 + dense). (wordvec indexes fuse too,
    but their model is fitted in the same run: name the stage with --stages to stack them.)"""
    return len(schema.vector_fields) >= 1


def _lists(stage: Any, planner: Any, data: Dataset, depth: int) -> tuple[list[str], list[Any], list[list[Any]]]:
    """(qids, fixed-fusion rankings, their input lists) of `data`'s queries, in batches."""
    qids, fused, lists = [], [], []
    ids = list(data.queries)
    for start in range(0, len(ids), 128):
        part = ids[start:start + 128]
        plans = [planner.plan(data.queries[q]) for q in part]
        weights, got = stage.lists(plans, depth)
        for q, w, ls in zip(part, weights, got):
            qids.append(q)
            fused.append(stage.fuse(ls, w))
            lists.append(ls)
    return qids, fused, lists


def _matrix(fused: list[Any], lists: list[list[Any]], qids: list[str], qrels: dict[str, dict[str, int]]):
    from souk.retrieval.fusion import stack_features

    blocks = [stack_features(f, ls) for f, ls in zip(fused, lists)]
    labels = [np.asarray([max(qrels.get(q, {}).get(d, 0), 0) for d in f.ids], dtype=np.float64)
              for q, f in zip(qids, fused)]
    return blocks, labels


def _ndcg(qids: list[str], fused: list[Any], scores: list[np.ndarray] | None,
          qrels: dict[str, dict[str, int]]) -> float:
    run = {}
    for q, f, s in zip(qids, fused, scores if scores is not None else [None] * len(qids)):
        if s is None:
            run[q] = list(zip(f.ids, np.asarray(f.scores, dtype=np.float64).tolist()))
        else:
            order = np.lexsort((np.arange(len(s)), -s))
            run[q] = [(f.ids[i], float(len(order) - r)) for r, i in enumerate(order)]
    return ndcg10(run, {q: qrels[q] for q in qids})


def _stacked(booster: Any, blocks: list[np.ndarray], prior: float) -> list[np.ndarray]:
    if not blocks:
        return []
    x = np.concatenate(blocks)
    flat = booster.predict(x, num_threads=1) + prior * x[:, -3]
    out, start = [], 0
    for b in blocks:
        out.append(flat[start:start + len(b)])
        start += len(b)
    return out


@register_fitter(STAGE, applies=applies, share=0.1, order=25, options=FusionOptions)
def fit_fusion(job: FitJob) -> dict[str, Any]:
    """Train the stacking model into `job.workdir` (see the module docstring); returns the manifest."""
    import lightgbm as lgb

    from souk.plugins import parse_options
    from souk.query.understand import planner_for
    from souk.ranking.pipeline import stage_specs
    from souk.ranking.recall import RecallStage
    from souk.ranking.stage import StageContext
    from souk.retrieval.fusion import stack_columns

    t0 = time.monotonic()
    opts = parse_options(STAGE, job.options, FusionOptions)
    if not opts.stacking:
        return {"skipped": "option fusion.stacking is off: the fixed fusion serves", "retire": True}
    searcher = fit_searcher(job.index_path)
    spec = {k: v for k, v in stage_specs("full", searcher.schema.pipelines)[0].items() if k != "stage"}
    stage = RecallStage(StageContext(searcher), {**spec, "stacking": False})
    names = list(stage.retrievers)
    if len(names) < 2:
        return {"skipped": f"the learned recall has one list ({', '.join(names)}): nothing to fuse", "retire": True}
    depth = max(stage.depth.values())
    planner = planner_for(searcher)
    rng = np.random.default_rng(job.seed)
    learn, held = split_train(sample(job.train, opts.queries + opts.held_out_max, rng), opts.held_out,
                              opts.held_out_max, rng)
    valid = sample(job.dev, opts.dev_max, rng) if job.dev is not None else held
    parts: dict[str, Any] = {}
    for what, data in (("train", learn), ("held", held), ("valid", valid)):
        if what == "valid" and valid is held:
            parts[what] = parts["held"]
            continue
        qids, fused, lists = _lists(stage, planner, data, depth)
        blocks, labels = _matrix(fused, lists, qids, data.qrels)
        parts[what] = (qids, fused, blocks, labels, data.qrels)

    def dataset(what: str) -> Any:
        _, _, blocks, labels, _ = parts[what]
        keep = [i for i, y in enumerate(labels) if y.max(initial=0) > 0]
        if not keep:
            raise DatasetError(f"fusion: no {what} query has a relevant document among its recall candidates")
        x = np.concatenate([blocks[i] for i in keep])
        return lgb.Dataset(x, np.concatenate([labels[i] for i in keep]), group=[len(labels[i]) for i in keep],
                           init_score=opts.prior * x[:, -3], free_raw_data=False)

    train_set = dataset("train")
    valid_set = dataset("valid") if valid is not held else dataset("held")
    params = {**PARAMS, "seed": job.seed}
    booster = lgb.train(params, train_set, num_boost_round=opts.rounds, valid_sets=[valid_set],
                        callbacks=[lgb.early_stopping(opts.patience, verbose=False)])
    qids, fused, blocks, _, qrels = parts["held"]
    fixed_held = _ndcg(qids, fused, None, qrels)
    stacked_held = _ndcg(qids, fused, _stacked(booster, blocks, opts.prior), qrels)
    dev_metrics: dict[str, Any] = {}
    if valid is not held:
        vq, vf, vb, _, vqrels = parts["valid"]
        dev_metrics = {"ndcg@10": round(_ndcg(vq, vf, _stacked(booster, vb, opts.prior), vqrels), 4),
                       "fixed_ndcg@10": round(_ndcg(vq, vf, None, vqrels), 4), "queries": len(vq)}
    (job.workdir / "model.txt").write_text(booster.model_to_string())
    win = stacked_held >= fixed_held + opts.min_gain
    return {
        "kind": KIND,
        "stacking": True,
        "retrievers": names,
        "columns": stack_columns(names),
        "prior": opts.prior,
        "fusion": {"method": stage.fusion, "norm": stage.norm, "weights": stage.weights, "depth": stage.depth},
        "held_out": {"queries": len(qids), "ndcg@10": round(stacked_held, 4), "fixed_ndcg@10": round(fixed_held, 4)},
        "dev": dev_metrics,
        "params": {**params, "rounds": booster.best_iteration or opts.rounds},
        "training": {"queries": len(parts["train"][0])},
        "activate": win,
        "retire": not win,  # the fixed fusion serves
        "note": (f"stacking {stacked_held:.4f} vs fixed fusion {fixed_held:.4f} on {len(qids)} held-out train queries"
                 + ("" if win else ": published inactive, the fixed fusion serves")),
        "fit_seconds": round(time.monotonic() - t0, 1),
    }
