"""Fitter `dense`: the weight of pseudo-relevance feedback for the query vector (option `dense.prf`).

The `dense` retriever can move each query's vector toward the documents BM25 and the encoder agree on
(`souk.retrieval.feedback`). This fitter trains nothing: it measures the `hybrid` recall's nDCG@10 on a
seeded sample of TRAIN queries (never dev) at each weight of `weights` and at 0, and activates a model
holding the best weight when it beats no feedback by `min_gain`; otherwise (or with `prf = false`) no
`dense` model is active and the retriever searches with the plain query vector. It runs after `bi` (the
encoder it measures is the one that will serve) and before the stages that read recall.
Misuse: reading the table as a dev figure (the dev split is only reported, never chosen on).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from souk.evaluation.datasets import Dataset
from souk.plugins import POSITIVE_INT, option_check
from souk.retrieval.feedback import KIND, STAGE, Feedback
from souk.training.fit import FitJob, register_fitter
from souk.training.kit import candidates, fit_searcher, ndcg10, sample

PRF = True  # on: homedepot held-out train hybrid 0.4262 -> 0.4321, scifact declined by the fitter (see the fit report)


@dataclass
class DenseOptions:
    """The `dense` fitter's options (`souk fit --option dense.KEY=VALUE`)."""

    prf: bool = PRF
    weights: list[float] = field(default_factory=lambda: [0.25, 0.5, 1.0, 2.0], metadata=option_check(
        lambda v: bool(v) and all(0 < w <= 100 for w in v), "a list of weights in (0, 100]"))
    lexical: int = field(default=Feedback.lexical, metadata=POSITIVE_INT)
    agree: int = field(default=Feedback.agree, metadata=POSITIVE_INT)
    queries: int = field(default=300, metadata=POSITIVE_INT)   # train queries the weight is chosen on
    dev_max: int = field(default=300, metadata=POSITIVE_INT)   # dev queries reported (never chosen on)
    min_gain: float = 0.002


def applies(schema: Any, index: Any) -> bool:
    """Where the `bi` fitter applies: one vector field whose encoder reads the documents."""
    from souk.training.bi import applies as bi_applies

    return bi_applies(schema, index)


def recall_ndcg(searcher: Any, data: Dataset, fb: Feedback, preset: str = "hybrid") -> float:
    """nDCG@10 of preset `preset`'s recall on `data` with feedback `fb` (weight 0: none)."""
    from souk.ranking.pipeline import build_pipeline, stage_specs

    spec = dict(stage_specs(preset, searcher.schema.pipelines)[0])
    dense = {"prf": fb.weight, "prf_lexical": fb.lexical, "prf_agree": fb.agree}
    spec["options"] = {**spec.get("options", {}), "dense": {**spec.get("options", {}).get("dense", {}), **dense}}
    heads = candidates(build_pipeline(f"{preset}-prf", searcher, {"stages": [spec]}), data.queries, 10)
    run = {q: list(zip(ids, s.astype(np.float64).tolist())) for q, (ids, s) in heads.items()}
    return ndcg10(run, data.qrels)


@register_fitter(STAGE, applies=applies, share=0.1, order=15, options=DenseOptions)
def fit_dense(job: FitJob) -> dict[str, Any]:
    """Choose the feedback weight on train queries (see the module docstring); returns the manifest."""
    from souk.plugins import parse_options

    t0 = time.monotonic()
    opts = parse_options(STAGE, job.options, DenseOptions)
    if not opts.prf:
        return {"skipped": "option dense.prf is off: no feedback", "retire": True}
    searcher = fit_searcher(job.index_path)
    rng = np.random.default_rng(job.seed)
    chosen_on = sample(job.train, opts.queries, rng)
    table = {}
    for w in [0.0, *opts.weights]:
        table[f"{w:g}"] = round(recall_ndcg(searcher, chosen_on, Feedback(w, opts.lexical, opts.agree)), 4)
        if time.monotonic() > job.deadline:
            break
    tried = [w for w in table if float(w) > 0] or ["0"]
    best = max(tried, key=lambda w: (table[w], -float(w)))  # the best feedback weight (the smallest on ties) ...
    weight = float(best)
    win = weight > 0 and table[best] >= table["0"] + opts.min_gain  # ... against none
    dev: dict[str, Any] = {}
    if job.dev is not None and win:
        dev_set = sample(job.dev, opts.dev_max, rng)
        fb = Feedback(weight, opts.lexical, opts.agree)
        dev = {"hybrid_ndcg@10": round(recall_ndcg(searcher, dev_set, fb), 4),
               "hybrid_ndcg@10_without": round(recall_ndcg(searcher, dev_set, Feedback()), 4),
               "queries": len(dev_set.qrels)}
    return {
        "kind": KIND,
        "prf": {"weight": weight if win else 0.0, "lexical": opts.lexical, "agree": opts.agree},
        "train": {"queries": len(chosen_on.qrels), "hybrid_ndcg@10_by_weight": table},
        "dev": dev,
        "activate": win,
        "retire": not win,
        "note": (f"feedback weight {weight:g} chosen on {len(chosen_on.qrels)} train queries (hybrid nDCG@10 "
                 f"{table[best]:.4f} vs {table['0']:.4f} without)" if win
                 else "published inactive: no feedback weight beat the plain query vector on train queries"),
        "fit_seconds": round(time.monotonic() - t0, 1),
    }
