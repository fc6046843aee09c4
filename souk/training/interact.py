"""`souk fit --stages interact`: train the interaction model (souk/ranking/interact.py) on the candidates
the `full` pipeline's recall gives each train query.

Runs after `wordvec` (it reads that model's corpus view). Candidates: the top 30 of recall per train query
(queries whose judged documents recall misses are left out), the top `depth` (100) per dev query. Loss:
listwise softmax cross-entropy against the grades; Adam; early-stopped on the dev split's nDCG@10 of the
reranked candidates (a held-out tenth of train without a dev split), stopped at the deadline with the
best epoch kept. The model is made active only when it beats recall's own order on that split.
Misuse: fitting it on the split you report.
"""
from __future__ import annotations

import random
import time
from typing import Any

import numpy as np

from souk.errors import Unavailable
from souk.evaluation.metrics import score_run
from souk.progress import progress_bar
from souk.ranking.interact import (STAGE, build_module, corpus_stats, features_for, manifest_fields,
                                   save_module)
from souk.ranking.pipeline import stage_specs
from souk.ranking.recall import RecallStage
from souk.ranking.stage import StageContext
from souk.retrieval.wordvec import active_model, corpus_view
from souk.training.fit import FitJob, register_fitter
from souk.training.wordvec import reads_han

DEFAULTS: dict[str, Any] = {"train_depth": 30, "depth": 100, "epochs": 12, "batch_size": 32, "lr": 3e-3,
                            "hidden": 32, "patience": 2, "held_out": 0.1, "train_retrievers": ["bm25", "dense"]}


@register_fitter(STAGE, applies=reads_han, share=0.55, order=30)
def fit_interact(job: FitJob) -> dict[str, Any]:
    """Train the interaction model into `job.workdir`; returns its manifest fields."""
    import torch

    from souk.index import Index
    from souk.query.understand import planner_for

    opts = {**DEFAULTS, **{k: v for k, v in job.options.items() if k in DEFAULTS}}
    t_start = time.monotonic()
    searcher = Index.open(job.index_path).searcher()
    try:
        wv_dir, vectors, _ = active_model(searcher)
    except Unavailable as e:
        raise Unavailable(f"interact reads the wordvec model's features: {e}") from None
    view = corpus_view(searcher, wv_dir, vectors, progress=job.progress)
    stats = corpus_stats(view, vectors)
    spec = {k: v for k, v in stage_specs("full", searcher.schema.pipelines)[0].items() if k != "stage"}
    recall = RecallStage(StageContext(searcher), spec)
    # training candidates come from retrievers that never learned from these queries: the fitted wordvec
    # model has, and its list would hand the model the positives lexical matching misses
    train_recall = RecallStage(StageContext(searcher),
                               {**spec, "retrievers": [r for r in spec["retrievers"]
                                                       if r.rstrip("?") in opts["train_retrievers"]]})
    planner = planner_for(searcher)

    rng = random.Random(job.seed)
    torch.manual_seed(job.seed)
    if job.device == "cpu":
        torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    qids = sorted(job.train.queries)
    rng.shuffle(qids)
    if job.dev is not None and len(job.dev):
        learn, valid = qids, job.dev
        valid_queries, valid_qrels, valid_name = valid.queries, valid.qrels, f"{valid.name}/{valid.split}"
    else:
        n_held = max(1, int(len(qids) * opts["held_out"]))
        learn, held = qids[n_held:], qids[:n_held]
        valid_queries = {q: job.train.queries[q] for q in held}
        valid_qrels = {q: job.train.qrels[q] for q in held}
        valid_name = "held-out train"

    def candidates(
        queries: dict[str, str], depth: int, label: str, recall=recall
    ) -> tuple[list[str], list[list[str]], list[Any]]:
        ids, cands, rankings = list(queries), [], []
        with progress_bar(f"interact: recall ({label})", len(ids), enabled=job.progress) as advance:
            for start in range(0, len(ids), 256):
                chunk = ids[start:start + 256]
                found = recall.recall([planner.plan(queries[q]) for q in chunk], depth)
                for r in found:
                    rankings.append(r.top(depth))
                    cands.append(r.ids[:depth])
                advance(len(chunk))
        return ids, cands, rankings

    train_q, train_c, _ = candidates({q: job.train.queries[q] for q in learn}, int(opts["train_depth"]), "train",
                                     train_recall)
    keep = [i for i, (q, c) in enumerate(zip(train_q, train_c)) if any(job.train.qrels[q].get(d, 0) > 0 for d in c)]
    train_q, train_c = [train_q[i] for i in keep], [train_c[i] for i in keep]
    train_x, _ = features_for(vectors, view, stats, [job.train.queries[q] for q in train_q], train_c)
    train_y = np.zeros(train_x["valid"].shape, np.float32)
    for i, (q, c) in enumerate(zip(train_q, train_c)):
        train_y[i, : len(c)] = [max(job.train.qrels[q].get(d, 0), 0) for d in c]
    valid_q, valid_c, valid_r = candidates(dict(valid_queries), int(opts["depth"]), "valid")
    valid_x, _ = features_for(vectors, view, stats, [valid_queries[q] for q in valid_q], valid_c)
    recall_score = _ndcg({q: r.pairs() for q, r in zip(valid_q, valid_r)}, valid_qrels)

    module = build_module(int(opts["hidden"]))
    optimizer = torch.optim.Adam(module.parameters(), lr=float(opts["lr"]))
    tensors = {k: torch.from_numpy(v) for k, v in train_x.items()}
    labels, valid_mask = torch.from_numpy(train_y), torch.from_numpy(train_x["valid"])

    def evaluate() -> float:
        module.eval()
        with torch.no_grad():
            scores = np.concatenate([module({k: torch.from_numpy(v[s:s + 512]) for k, v in valid_x.items()
                                             if k != "valid"}).numpy()
                                     for s in range(0, len(valid_q), 512)]) if valid_q else np.zeros((0, 1))
        run = {}
        for i, (q, c) in enumerate(zip(valid_q, valid_c)):
            s = scores[i, : len(c)]
            order = np.argsort(-s, kind="stable")
            run[q] = [(c[j], float(s[j])) for j in order]
        return _ndcg(run, valid_qrels)

    best_state = {k: v.clone() for k, v in module.state_dict().items()}
    curve = [evaluate()]
    best_score, best_epoch, stale, stopped, epoch_seconds = curve[0], 0, 0, False, 0.0
    bs = int(opts["batch_size"])
    for epoch in range(1, int(opts["epochs"]) + 1):
        if job.seconds_left < max(1.2 * epoch_seconds, 10):
            stopped = True
            break
        t0 = time.monotonic()
        module.train()
        order = torch.randperm(len(train_q), generator=torch.Generator().manual_seed(job.seed + epoch))
        total = 0.0
        with progress_bar(f"interact: epoch {epoch}", len(train_q), enabled=job.progress) as advance:
            for start in range(0, len(order), bs):
                idx = order[start:start + bs]
                batch = {k: v[idx] for k, v in tensors.items() if k != "valid"}
                s = module(batch).masked_fill(~valid_mask[idx], -1e4)
                y = labels[idx]
                target = y / y.sum(-1, keepdim=True).clamp(min=1e-6)
                loss = -(torch.log_softmax(s, -1) * target).sum(-1).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(idx)
                advance(len(idx))
                if job.seconds_left < 5:
                    stopped = True
                    break
        score = evaluate()
        curve.append(score)
        epoch_seconds = time.monotonic() - t0
        if score > best_score:
            best_score, best_epoch, stale = score, epoch, 0
            best_state = {k: v.clone() for k, v in module.state_dict().items()}
        else:
            stale += 1
        if stopped or stale >= int(opts["patience"]):
            break
    module.load_state_dict(best_state)
    save_module(module, job.workdir)
    _plot_curve(curve, recall_score, best_epoch, valid_name, job.workdir / "curve.png")
    return {
        **manifest_fields(),
        "base_model": f"none (trained from scratch; features from wordvec model {wv_dir.name})",
        "reads": "feature ids of the active wordvec model (terms, Han characters, bigrams)",
        "hyper": opts,
        "dev": {"ndcg@10": round(best_score, 4), "recall_ndcg@10": round(recall_score, 4), "on": valid_name,
                "depth": int(opts["depth"])},
        "curve": {"ndcg@10": [round(v, 4) for v in curve], "best_epoch": best_epoch},
        "train_queries": len(train_q),
        "stopped_by_budget": stopped,
        "activate": best_score > recall_score,
        "active": best_score > recall_score,
        "train_seconds": round(time.monotonic() - t_start, 1),
    }


def _ndcg(run: dict[str, list[tuple[str, float]]], qrels) -> float:
    return float(score_run(run, qrels, ["ndcg@10"]).means()["ndcg@10"]) if qrels else 0.0


def _plot_curve(curve: list[float], recall_score: float, best: int, name: str, path) -> None:
    from souk.evaluation.report import _figure, _png

    figure = _figure()
    ax = figure.subplots()
    ax.plot(range(len(curve)), curve, marker="o", color="#3b6ea5", label=f"interact over recall, {name}")
    ax.axhline(recall_score, color="#c0392b", linestyle=":", label="recall alone")
    ax.axvline(best, color="#333333", linestyle="--", label=f"kept epoch {best}")
    ax.set(title="interact: nDCG@10 by epoch (0 = untrained)", xlabel="epoch", ylabel="nDCG@10")
    ax.legend()
    path.write_bytes(_png(figure))
