"""Fitter `cross`: a cross-encoder reranker from the bundled MiniLM weights, mixed with the recall score.

Schedule: weak groups from the corpus first (a title or sentence of a document as its pseudo-query,
negatives from BM25), then judged groups (each judged positive with lower-graded or unjudged recall
candidates as hard negatives), listwise softmax loss by default. Early stopping reranks the dev
queries' top `RERANK_DEPTH` candidates (the previous stages of `full`) and measures nDCG@10 of the
cross score alone. A part of TRAIN is held out from training: the weight that mixes the cross score
with the previous stage's (`Combination`) is chosen there, never on dev. On a small judged set the
cross score alone falls below hybrid recall; the mix keeps what recall knows.
Misuse: reading dev numbers from the manifest as test numbers (dev chose the checkpoint).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from souk.errors import ConfigError, ModelError
from souk.evaluation.datasets import Dataset
from souk.models.cross_encoder import KIND, Combination, FieldLimits, Pair, PairPacker, logits
from souk.training.data import DocTexts, Group, judged_groups, max_grade, weak_groups
from souk.training.fit import FitJob, register_fitter
from souk.training.kit import (Heads, candidates, fit_searcher, ndcg10, prior_pipeline, ranking_evaluator, reordered,
                               sample, split_train, subset, write_curve)
from souk.training.losses import LOSSES
from souk.training.distributed import replica
from souk.training.loop import LoopConfig, Phase, autocast_dtype, set_threads, train
from souk.training.mlm import post_train_for
from souk.training.weights import base_layers, layers_within, new_model, save_model

if TYPE_CHECKING:
    pass

RERANK_DEPTH = 20      # what the `rerank` and `full` presets hand the cross stage
# With `cross.full_ms` and `cross.latency_ms` null (the default measures the layers: `measured_layers`), the
# layer-tokens one query may cost (layers x pairs x tokens per pair), for `full` within 40 ms at depth 20 on 2
# cores: cross-encoders now score in bf16 (OpenVINO, AMX) at ~85 layer-tokens/ms. HomeDepot (pairs ~28 tokens),
# `souk bench serve --pipeline full --clients 1`: 6 layers (3,360) p50 66.5 ms, cross 41 ms; 3 layers (1,680)
# p50 40.8-42.6 ms, cross 20-21 ms, dev nDCG@10 of the fit 0.4469 vs 0.4479 (short budgets). 96-token pairs get
# one layer. (It was 5,760, for a 150 ms search.) Those are Intel (AMX bf16) numbers: on an AVX2-only AMD EPYC
# (fp32 near the FMA units' peak, ~18 layer-tokens per core-ms; 2 cores) HomeDepot's 3 layers took ~100 ms of
# CPU a query: `souk bench serve --pipeline full --clients 1` p50 50-55 ms (cross 43-48) at load ~1.7, `souk eval
# --pipeline full` 112.7 ms at load 3-7; SciFact's one layer of 96-token pairs p50 73.3 ms served (cross 56.7),
# 185.2 ms in eval at load 3-7. A 1-layer HomeDepot cross (`cross.layers=1`) did not beat its prior on the
# held-out queries (0.4121 both) and stayed inactive. No fitted cross kept `full` within 40 ms there.
LAYER_TOKENS = 1920
NEGATIVE_DEPTH = 30    # hard negatives come from this deep in recall
WEIGHTS = np.round(np.linspace(0.0, 1.0, 21), 2)
MIX_FOLDS = 5  # folds of the held-out queries for the cross-validated gain of the mix (`cross_validated_gain`)
DEFAULTS: dict[str, Any] = {
    "base": None,            # model directory to start from (default: the bundled all-MiniLM-L6-v2)
    "mlm": False,            # domain post-training first: `mlm_steps` whole-word MLM steps (souk.training.mlm)
    "mlm_steps": 200,
    "loss": "listwise",
    "negatives": 3,          # per positive
    "groups_per_batch": 8,
    "lr": 4e-5,
    "epochs": 10,            # passes over the judged groups at most (the budget or early stopping usually ends it)
    "weak_groups": 3000,     # pseudo-query groups from the corpus (0: none)
    "weak_share": 0.3,       # at most this share of the training time on them
    "eval_every": 200,       # steps between dev evaluations ...
    "evals": 4,              # ... or this many evaluations spread over the training time, whichever is sooner
    "eval_start": False,     # also score the untrained model (costs one evaluation of the budget)
    "patience": 3,
    "held_out": 0.2,         # share of TRAIN queries (at most `held_out_max`) kept for choosing the mix
    "held_out_max": 200,
    # ... and, where TRAIN holds more queries than `train_max`, the ones left over join them, up to this many
    # held-out queries in all (`split_queries`)
    "held_out_spare": 2000,
    "dev_max": 60,           # dev queries for early stopping (a seeded sample beyond this)
    "max_length": FieldLimits.max_length, "query_length": FieldLimits.query, "title_length": FieldLimits.title,
    "batch_size": 32,        # scoring batch
    "layers": None,          # transformer layers kept from the base (default: `full_ms`, measured)
    # what the head reads: the tokens' mean or the [CLS] state (`cross_encoder.POOLINGS`). HomeDepot, seed 13, 9 min,
    # cross-validated held-out gain over the ltr: [CLS] with 3 layers stayed at chance (loss log 4; three fits),
    # with 4 +0.0029 +- 0.0016; the mean with 2 layers +0.0023 +- 0.0018, with 4 +0.0019 +- 0.0017. SciFact's one
    # layer: [CLS] +0.0014 +- 0.0063, the mean +0.0026 +- 0.0104 (both inactive).
    "pooling": "mean",
    # a `full` search's time a query (20 candidates reranked) the layers are chosen for: the stages before the
    # cross are timed here (`prior_ms`), and what is left, over `STAGE_COST`, is the forward pass's budget on this
    # machine's fastest path (`measured_layers`)
    "full_ms": 40.0,
    # the forward pass's budget itself (overrides `full_ms`); with both null: the fixed LAYER_TOKENS
    "latency_ms": None,
    # train queries at most (a seeded sample beyond): homedepot's 7,243 took 362 s of recall on loaded cores, leaving
    # its cross no step; 3,000 hold ~12,000 judged groups, more than a CPU budget trains on (678 steps of 8 in 8 min)
    "train_max": 3000,
    # choose the mix against the ltr's out-of-fold scores of the held-out train queries (`held_out_heads`)
    "out_of_fold": True,
    # activate only when the mix's cross-validated held-out gain over the previous stage (`cross_validated_gain`)
    # exceeds this many standard errors of the per-query gains (1: the one-standard-error rule); 0: any gain
    "min_gain_se": 1.0,
}


class Scorer:
    """Scores (query, candidate) lists with the model being trained; document tokens kept once."""

    def __init__(self, net: Any, packer: PairPacker, texts: DocTexts, device: str, batch_size: int):
        self.net, self.packer, self.texts, self.device, self.batch_size = net, packer, texts, device, batch_size
        self._docs: dict[str, tuple[list[int], list[int]]] = {}

    def doc_tokens(self, ids: Sequence[str]) -> list[tuple[list[int], list[int]]]:
        missing = [i for i in dict.fromkeys(ids) if i not in self._docs]
        if missing:
            self._docs.update(zip(missing, self.packer.doc_tokens(self.texts.get(missing))))
        return [self._docs[i] for i in ids]

    def score(self, queries: dict[str, str], lists: dict[str, list[str]]) -> dict[str, np.ndarray]:
        import torch

        pairs: list[Pair] = []
        owners: list[str] = []
        for qid, ids in lists.items():
            q = self.packer.tokens([queries[qid]], self.packer.limits.query)[0]
            pairs.extend(self.packer.pack(q, d) for d in self.doc_tokens(ids))
            owners.extend([qid] * len(ids))
        flat = np.zeros(len(pairs), dtype=np.float32)
        dtype = autocast_dtype(self.device)
        with torch.inference_mode(), torch.autocast(self.device, dtype=dtype or torch.float32,
                                                    enabled=dtype is not None):
            for rows, ids, types, mask in self.packer.batches(pairs, self.batch_size):
                t = [torch.from_numpy(a).to(self.device) for a in (ids, types, mask)]
                flat[rows] = logits(self.net, *t).cpu().numpy()
        out, pos = {}, 0
        for qid, ids in lists.items():
            out[qid] = flat[pos:pos + len(ids)]
            pos += len(ids)
        return out


def pair_length(packer: PairPacker, data: Dataset, heads: Heads, texts: DocTexts,
                sample: int = 200) -> float:
    """Median packed length of (query, top candidate) pairs of the first `sample` training queries."""
    qids = [q for q in sorted(data.qrels) if heads.get(q, ([], None))[0]][:sample]
    if not qids:
        return float(packer.limits.max_length)
    docs = packer.doc_tokens(texts.get([heads[q][0][0] for q in qids]))
    queries = packer.tokens([data.queries[q] for q in qids], packer.limits.query)
    return float(np.median([len(packer.pack(q, d)[0]) for q, d in zip(queries, docs)]))


def head_ndcg(data: Dataset, heads: Heads, scores: dict[str, np.ndarray]) -> float:
    """nDCG@10 of every query's head ordered by `scores` (queries with no candidates score 0)."""
    return ndcg10(reordered(heads, scores, data.qrels), data.qrels)


def choose_weight(data: Dataset, heads: Heads, cross: dict[str, np.ndarray]) -> tuple[float, dict[str, float]]:
    """The mixing weight with the best nDCG@10 on `data` (the smallest on ties) and the score of each."""
    table = {}
    for w in WEIGHTS:
        c = Combination(float(w))
        table[f"{w:.2f}"] = head_ndcg(data, heads, {q: c.apply(cross[q], heads[q][1]) for q in cross})
    best = max(table.values())
    return next(float(w) for w in table if table[w] == best), table


def _per_query_gains(data: Dataset, heads: Heads, cross: dict[str, np.ndarray], weight: float) -> np.ndarray:
    """Each judged query's nDCG@10 at the mix `weight` minus the previous stage's alone (queries of `data`)."""
    from souk.evaluation.metrics import score_run

    mix = Combination(weight)

    mine = [q for q in cross if q in data.qrels and q in heads]
    scored = {q: heads[q] for q in mine}

    def per_query(scores: dict[str, np.ndarray]) -> dict[str, float]:
        run = score_run(reordered(scored, scores, data.qrels), data.qrels, ["ndcg@10"])
        return dict(zip(run.qids, run.values["ndcg@10"].tolist()))

    after = per_query({q: mix.apply(cross[q], heads[q][1]) for q in mine})
    before = per_query({q: heads[q][1] for q in mine})
    return np.asarray([after.get(q, 0.0) - before.get(q, 0.0) for q in data.qrels], dtype=np.float64)


def _mean_se(gains: np.ndarray) -> tuple[float, float]:
    if len(gains) < 2:
        return float(gains.sum()), 0.0
    return float(gains.mean()), float(gains.std(ddof=1) / math.sqrt(len(gains)))


def mix_gain(data: Dataset, heads: Heads, cross: dict[str, np.ndarray], weight: float) -> tuple[float, float]:
    """The mix's mean per-query nDCG@10 gain at `weight` over the previous stage's order on `data`, and the
    standard error of that mean (queries paired; 0 with fewer than two)."""
    return _mean_se(_per_query_gains(data, heads, cross, weight))


def cross_validated_gain(data: Dataset, heads: Heads, cross: dict[str, np.ndarray], folds: int,
                         seed: int) -> tuple[float, float]:
    """`mix_gain` of a weight chosen on other queries: each of `folds` seeded folds of `data` scored at the weight
    `choose_weight` picks on the rest, the gains pooled. The best of 21 weights on the same queries is optimistic
    (its gain includes the luck of the choice); this is what choosing on held-out queries gains on new ones. With
    fewer than two queries a fold there is nothing to hold apart: the in-sample `mix_gain` of the best weight."""
    qids = sorted(data.qrels)
    if len(qids) < 2 * folds:
        return mix_gain(data, heads, cross, choose_weight(data, heads, cross)[0])
    order = np.random.default_rng(seed).permutation(len(qids))
    gains = []
    for k in range(folds):
        inside = {qids[i] for i in order[k::folds]}
        rest = subset(data, [q for q in qids if q not in inside], "choose")
        weight = choose_weight(rest, heads, {q: v for q, v in cross.items() if q not in inside})[0]
        fold = subset(data, sorted(inside), "score")
        gains.append(_per_query_gains(fold, heads, {q: v for q, v in cross.items() if q in inside}, weight))
    return _mean_se(np.concatenate(gains))


def split_queries(data: Dataset, opts: dict[str, Any], rng: np.random.Generator,
                  seed: int) -> tuple[Dataset, Dataset]:
    """(queries to train on, held-out queries that choose the mix): a seeded share `held_out` of `data` (at most
    `held_out_max`) held out, at most `train_max` of the rest trained on (recall for queries the budget cannot
    train on is time the training does not get) and the ones left over held out too, up to `held_out_spare`
    held-out queries in all. Why: the weight chosen on 200 queries moved with them. HomeDepot (7,443 TRAIN
    queries, cross of seed 13): chosen on the 200, 0.45 (+0.011 there) gave `full` 0.4484 on dev against the ltr's
    0.4486; chosen on the 4,243 left over, 0.25 (+0.002 there) gave 0.4506 (the best weight on dev, 0.15, 0.4511).
    Over 400 seeded draws of that pool, choosing on 200 queries left dev below the ltr 2% of the time (dev mean
    0.4502), on 1,000 never (0.4505, 10th percentile 0.4495), on 2,000 never (0.4506, 0.4506). Crosses of seeds 14
    and 15 (`--stages cross --budget-min 10`): on 200 drawn queries below the ltr 8% and 0.75% of the time (means
    0.4496, 0.4515), on 2,000 never (0.4505, 0.4522); as fitted, 0.4504 and 0.4524 from the old 200, 0.4498 and
    0.4525 from the 2,000 (mean of the three seeds 0.4504 -> 0.4510). Where TRAIN holds no more than `train_max`
    queries nothing changes: no query is taken from training."""
    train_set, held = split_train(data, opts["held_out"], opts["held_out_max"], rng)
    if not opts["train_max"] or len(train_set.qrels) <= int(opts["train_max"]):
        return train_set, held
    kept = sample(train_set, int(opts["train_max"]), np.random.default_rng([seed, 5]))
    spare = [q for q in sorted(train_set.qrels) if q not in kept.qrels]
    room = int(opts["held_out_spare"]) - len(held.qrels)
    if room <= 0:
        return kept, held
    if len(spare) > room:
        spare = sorted(np.random.default_rng([seed, 6]).choice(spare, size=room, replace=False).tolist())
    return kept, subset(data, sorted(held.qrels) + spare, held.split)


def held_out_heads(index_path: Any, held: Dataset, prior: Any, out_of_fold: bool = True,
                   least: float = 0.5) -> tuple[Dataset, Heads, str]:
    """(held-out queries, their top `RERANK_DEPTH` candidates with the previous stage's scores, where those came
    from) for choosing the mix. The active ltr model trained on every train query, so its order of held-out TRAIN
    queries is far better than of a new query's (scifact: 0.965 against 0.759 on dev) and no mix would ever
    win; where it wrote out-of-fold scores (`souk.training.ltr.write_out_of_fold`: each query scored by the
    K-fold booster that never saw it) those are the prior instead, over the held-out queries that have them
    (all but those the ltr's collection or folds did not reach; when fewer than `least` of them, the served
    prior as before). Misuse: reading the served ltr's scores of train queries as what serving will see."""
    fallback = "previous stages as served"
    if out_of_fold:
        oof = out_of_fold_scores(Path(index_path))
        if oof is not None:
            have = [q for q in sorted(held.qrels) if q in oof]
            if have and len(have) >= least * len(held.qrels):
                return subset(held, have, held.split), {q: oof[q] for q in have}, "ltr out-of-fold scores"
            fallback += f" (out-of-fold scores for {len(have)} of {len(held.qrels)} queries only)"
    return held, candidates(prior, held.queries, RERANK_DEPTH), fallback


def mix_context(index_path: Path, searcher: Any, held: Dataset, prior_of: str) -> str:
    """What a mix's held-out gain is measured against, as one digest: the index's commit and pipelines, the active
    models of the other stages, where the prior scores came from and the held-out queries. Two crosses of equal
    contexts were judged on the same queries against the same candidates and scores: their gains compare."""
    import hashlib

    from souk.models.store import ModelStore

    stages = {k: v for k, v in ModelStore(index_path).active_names().items() if k != "cross"}
    what = {"commit": searcher.commit_id, "pipelines": searcher.schema.pipelines, "stages": stages,
            "prior": prior_of, "queries": sorted(held.qrels)}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:32]


def standing_cross(index_path: Path, context: str) -> dict[str, Any] | None:
    """The active cross-encoder's name and cross-validated held-out gain where its mix was chosen in `context`
    (`mix_context`), else None (none active, or judged against other stages, queries or documents: its gain no
    longer says what it adds)."""
    from souk.models.store import ModelStore, read_model_manifest

    try:
        path = ModelStore(index_path).active("cross")
        if path is None:
            return None
        held = read_model_manifest(path, kind=KIND).get("held_out")
    except ModelError:  # unreadable or tampered: nothing to weigh against (it is retired as before)
        return None
    if not isinstance(held, dict) or held.get("context") != context:
        return None
    gain = held.get("cross_validated_gain")
    if not isinstance(gain, (int, float)) or isinstance(gain, bool) or not math.isfinite(gain):
        return None
    return {"model": path.name, "cross_validated_gain": float(gain)}


def out_of_fold_scores(index_path: Path, max_bytes: int = 256 << 20) -> Heads | None:
    """The active ltr model's out-of-fold top candidates by train query (None: no active ltr, or one written
    before it kept them). The file is untrusted: read only after the model's file hashes are checked, its shape
    checked (`ModelUnavailable` naming the model otherwise)."""
    import json

    from souk.errors import ModelUnavailable
    from souk.models.store import ModelStore, read_model_manifest
    from souk.ranking.ltr import KIND as LTR_KIND
    from souk.training.ltr import OUT_OF_FOLD_FILE

    path = ModelStore(index_path).active("ltr")
    if path is None or not (path / OUT_OF_FOLD_FILE).is_file():
        return None
    read_model_manifest(path, kind=LTR_KIND)
    bad = ModelUnavailable(f"model {path.name}: {OUT_OF_FOLD_FILE} is not what the ltr fitter writes; refit it")
    try:
        if (path / OUT_OF_FOLD_FILE).stat().st_size > max_bytes:
            raise bad
        raw = json.loads((path / OUT_OF_FOLD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        raise bad from None
    queries = raw.get("queries") if isinstance(raw, dict) else None
    if not isinstance(queries, dict):
        raise bad
    out: Heads = {}
    for qid, head in queries.items():
        ids, scores = (head.get("ids"), head.get("scores")) if isinstance(head, dict) else (None, None)
        if not (isinstance(ids, list) and isinstance(scores, list) and len(ids) == len(scores)
                and all(isinstance(i, str) for i in ids)
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in scores)):
            raise bad
        out[str(qid)] = (ids[:RERANK_DEPTH], np.asarray(scores[:RERANK_DEPTH], dtype=np.float32))
    return out


def batches_of(groups: Sequence[Group], per_batch: int):
    for start in range(0, len(groups) - per_batch + 1, per_batch):
        yield groups[start:start + per_batch]


def applies(schema: Any, index: Any) -> bool:
    """Where the base encoder reads the documents (the bundled MiniLM does not read Chinese)."""
    from souk.models.registry import model_card
    from souk.training.wordvec import reads_han

    return model_card("all-MiniLM-L6-v2").reads_han or not reads_han(schema, index)


PROBE_QUERIES = 16  # train queries (a seeded sample) whose candidates price the layers (`probe_queries`)
# the cross stage's time in a search over what the probe prices it at (`measured_layers`: the forward pass of one
# query's candidates as a + b x layers, plus reading and tokenizing them as first met): the stage also waits for
# the inference threads to wake after the stages before it. `souk eval --pipeline full --json` on dev, each run
# paired with the probe of the fit (16 train queries, seed 13) right after it; AVX-512 EPYC, 2 cores, load
# 1.2-1.9, openvino-bf16: HomeDepot, 4 layers of ~26-token pairs, stage p50 32.26 / 30.89 ms, priced 32.97 / 29.90
# (0.98 / 1.03); SciFact, 1 layer of 96-token pairs, 33.07 / 34.84 ms, priced 28.55 / 31.31 (read 7.8 / 10.6:
# 1.16 / 1.11). The larger kept. (The probe before, the first 4 train queries' pairs sorted by length and a
# 2-layer model's time halved, priced HomeDepot's 4 layers at 21.2 ms for a 27.3 ms stage: 1.29.)
STAGE_COST = 1.15
PRIOR_QUERIES = 12  # train queries timed through the stages before the cross (`prior_ms`)


def prior_ms(prior: Any, queries: dict[str, str], n: int = PRIOR_QUERIES) -> float:
    """Median milliseconds the stages before the cross (`prior`, a pipeline) take one query for its
    `RERANK_DEPTH` candidates, one query at a time as a search runs them, over `n` of `queries` (after one
    unmeasured query: models and caches load there). 0.0 without queries."""
    texts = list(queries.values())[:n + 1]
    if len(texts) < 2:
        return 0.0
    prior.run(prior.plan(texts[0]), RERANK_DEPTH)
    times = []
    for text in texts[1:]:
        t0 = time.perf_counter()
        prior.run(prior.plan(text), RERANK_DEPTH)
        times.append(1000.0 * (time.perf_counter() - t0))
    return float(np.median(times))


def forward_budget(opts: dict[str, Any], prior: Any, queries: dict[str, str],
                   read_ms: float = 0.0) -> tuple[float | None, dict[str, Any]]:
    """The forward pass's milliseconds a query the layers are chosen for: `latency_ms` where given, else what
    `full_ms` leaves after the timed stages before the cross, over `STAGE_COST`, less `read_ms` (reading and
    tokenizing the candidates: `probe_queries`); at least 0 (one layer then). None where neither is set (the fixed
    LAYER_TOKENS). With what was measured."""
    if opts.get("latency_ms"):
        return float(opts["latency_ms"]), {}
    if not opts.get("full_ms"):
        return None, {}
    before = round(prior_ms(prior, queries), 2)
    budget = max(0.0, (float(opts["full_ms"]) - before) / STAGE_COST - read_ms)
    return budget, {"full_ms": float(opts["full_ms"]), "prior_ms": before, "read_ms": round(read_ms, 2),
                    "stage_cost": STAGE_COST}


def probe_queries(packer: PairPacker, data: Dataset, heads: Heads, texts: DocTexts, seed: int,
                  queries: int = PROBE_QUERIES) -> tuple[list[Pair], float]:
    """The packed pairs of a seeded sample of `queries` training queries' top `RERANK_DEPTH` candidates, each
    query's in its order (`measured_layers` scores them a query a call, as a search does: their lengths and
    padding are the catalog's), and the median milliseconds reading and tokenizing one query's candidates takes
    when none was read before (as a search meets documents first)."""
    qids = [q for q in sorted(data.qrels) if heads.get(q, ([], None))[0]]
    rng = np.random.default_rng(seed)
    qids = [qids[i] for i in sorted(rng.choice(len(qids), min(queries, len(qids)), replace=False))] if qids else []
    out: list[Pair] = []
    reads = []
    for q in qids:
        ids = list(heads[q][0][:RERANK_DEPTH])
        fresh = DocTexts(texts.searcher, texts.fields)  # nothing read yet
        t0 = time.perf_counter()
        docs = packer.doc_tokens(fresh.get(ids))
        reads.append(1000.0 * (time.perf_counter() - t0))
        query = packer.tokens([data.queries[q]], packer.limits.query)[0]
        out += [packer.pack(query, d) for d in docs]
    return out, float(np.median(reads)) if reads else 0.0


def measured_layers(base: Path, packer: PairPacker, pairs: Sequence[Pair], most: int, latency_ms: float,
                    seed: int, pooling: str = "cls") -> tuple[int, dict[str, Any]]:
    """The most layers (1..`most`) whose forward pass over a query's candidates (`pairs`, `RERANK_DEPTH` a query:
    `probe_queries`) this machine runs within `latency_ms` on its fastest inference path. A 1-layer model from
    `base` is timed on every offered path as a search scores (one query's pairs a call, split across the cores:
    `cross_encoder.time_paths`), a `most`-layer one on the fastest path; the two give the call's fixed cost a
    (embeddings, head, the call's overhead) and its cost a layer b, and L layers cost a + b x L (the forward pass
    is linear in the layers; halving a 2-layer probe's time instead priced 4 layers 10% short, and a 1- and
    2-layer pair moved b by 25% between runs on a quiet machine). The probes are saved to a temporary directory
    and their exports removed from the cache after. Returns the layers and what was measured: the layer count
    follows the machine that fits, not a constant measured elsewhere.
    Misuse: fitting on one machine for serving on a slower one (set `cross.layers` there)."""
    from souk.models.cross_encoder import probe_pairs

    if not pairs:
        pairs = probe_pairs(packer, 2 * RERANK_DEPTH, 32)  # (no candidates to read: 32-token pseudo-text)
    report = _time_probe(base, packer, pairs, (1,), seed, None, pooling)[1]
    timed = {name: r["pairs_per_s"] for name, r in report.items() if "pairs_per_s" in r}
    path = max(timed, key=timed.__getitem__)
    call = {1: 1000.0 * RERANK_DEPTH / timed[path]}  # ms a query's candidates take at 1 and `most` layers
    per_layer, fixed = call[1], 0.0
    if most > 1:  # both depths again on that path, in turns: the same moments of the machine's load
        both = _time_probe(base, packer, pairs, (1, most), seed, path, pooling)
        call = {depth: 1000.0 * RERANK_DEPTH / both[depth][path]["pairs_per_s"] for depth in (1, most)}
        per_layer = (call[most] - call[1]) / (most - 1)
        fixed = call[1] - per_layer
        if per_layer <= 0 or fixed < 0:  # noise beyond the difference: the larger probe's time split per layer
            per_layer, fixed = call[most] / most, 0.0
    layers = max(1, min(most, int((latency_ms - fixed) // per_layer) if latency_ms > fixed else 1))
    return layers, {"latency_ms": round(latency_ms, 2), "path": path, "ms_per_layer": round(per_layer, 2),
                    "ms_fixed": round(fixed, 2), "ms_probe": {str(k): round(v, 2) for k, v in sorted(call.items())},
                    "pairs": len(pairs), "mean_tokens": round(float(np.mean([len(ids) for ids, _ in pairs])), 1),
                    "pairs_per_s": timed}


def _time_probe(base: Path, packer: PairPacker, pairs: Sequence[Pair], depths: Sequence[int], seed: int,
                path: str | None, pooling: str = "cls") -> dict[int, dict[str, dict[str, Any]]]:
    """Per depth in `depths`, the pairs/s of a model of that many layers from `base`, a query's `RERANK_DEPTH` pairs
    a call in order: one depth on every offered path (`path` None: `time_paths`' report), or several on `path`,
    timed in turns (`time_models`). The models and their exports are removed after."""
    import shutil
    import tempfile

    from souk.models.cross_encoder import onnx_export, time_models, time_paths

    with tempfile.TemporaryDirectory(prefix="souk-layer-probe-") as tmp:
        folders = {}
        for depth in depths:
            folder = folders[depth] = Path(tmp) / f"probe-{depth}"
            save_model(new_model(base, seed, depth, pooling), folder, base)
            (folder / "manifest.json").write_text(json.dumps({"kind": KIND, "created": time.time(),
                                                              "limits": asdict(packer.limits)}))
        tokens = PairPacker(folders[depths[0]] / "tokenizer.json", packer.limits)
        if path is None:
            (depth,) = depths
            out = {depth: time_paths(folders[depth], tokens, pairs, chunk=RERANK_DEPTH, in_order=True)}
            exported = any("pairs_per_s" in r for name, r in out[depth].items() if not name.startswith("torch"))
        else:
            speed = time_models(folders, tokens, pairs, path, chunk=RERANK_DEPTH)
            out = {depth: {path: {"pairs_per_s": round(speed[depth], 1)}} for depth in depths}
            exported = not path.startswith("torch")
        if exported:  # (built by the timing: found, not rebuilt)
            for folder in folders.values():
                shutil.rmtree(onnx_export(folder).parent, ignore_errors=True)
    return out


def activate_cross(index_path: Path, model_dir: Path) -> dict[str, Any]:
    """Measure a fitted cross-encoder's inference paths on this machine and the index's documents before it
    becomes active, so searches find the fastest path chosen (`souk.ranking.rerank.measure_model`). A failure
    to measure does not keep the model inactive: searches then take the unmeasured path, and a server measures
    again in its background. Pipelines of the index that cut its pairs shorter (`max_length`) are measured at
    their lengths too (`cut`: length -> path)."""
    from souk.index import Index
    from souk.ranking.rerank import cross_uses, measure_model

    try:
        verdict = measure_model(index_path, model_dir)
        lengths = {n for name, n in cross_uses(Index.open(index_path).schema.pipelines)
                   if n and name in (None, model_dir.name)}
        cut = {n: measure_model(index_path, model_dir, n)["backend"] for n in sorted(lengths)}
    except Exception as e:  # OpenVINO or ONNX Runtime refusing the export: still a usable model on torch
        return {"measured": False, "error": type(e).__name__}
    return {"measured": True, "backend": verdict["backend"], **({"cut": cut} if cut else {}),
            "pairs_per_s": {n: r["pairs_per_s"] for n, r in verdict["paths"].items() if "pairs_per_s" in r}}


@register_fitter("cross", applies=applies, order=70, on_activate=activate_cross, distributed=True, options=DEFAULTS)
def fit_cross(job: FitJob) -> dict[str, Any]:
    """Train, choose the mix on held-out TRAIN queries, save into `job.workdir`, return the manifest."""
    import torch

    from souk.models.registry import model_card

    t0 = time.monotonic()
    opts = {**DEFAULTS, **job.options}
    if opts["loss"] not in LOSSES:
        raise ConfigError(f"cross.loss: expected one of {', '.join(LOSSES)}, got {opts['loss']!r}")
    threads = set_threads()
    rng = np.random.default_rng(job.seed)
    searcher = fit_searcher(job.index_path)
    card = model_card(opts["base"] or "all-MiniLM-L6-v2")
    base = card.path
    if not (base / "tokenizer.json").is_file():
        raise ModelError(f"{base}: no tokenizer.json; the base must be a BERT-style model directory")
    limits = FieldLimits(opts["max_length"], opts["query_length"], opts["title_length"])
    packer = PairPacker(base / "tokenizer.json", limits)
    texts = DocTexts(searcher)
    train_set, held = split_queries(job.train, opts, rng, job.seed)
    prior = prior_pipeline(searcher)
    train_c = candidates(prior, train_set.queries, NEGATIVE_DEPTH, job.progress)
    held, held_c, held_prior_of = held_out_heads(job.index_path, held, prior, opts["out_of_fold"])
    dev = sample(job.dev, opts["dev_max"], rng) if job.dev is not None else held
    dev_c = held_c if dev is held else candidates(prior, dev.queries, RERANK_DEPTH)
    top = max_grade(job.train, job.dev)

    tokens = pair_length(packer, train_set, train_c, texts)
    timing: dict[str, Any] = {}
    layers = opts["layers"]
    if not layers and (opts["latency_ms"] or opts["full_ms"]):
        if replica() is not None:  # Ray workers need not be the machine that serves
            timing = {"skipped": "fitted on Ray: the fixed LAYER_TOKENS (set cross.layers for the serving machine)"}
        else:
            try:
                from souk.index.writer import OtherLoad

                others = OtherLoad()  # the layers are priced for the load of this moment: say what it was
                pairs, read_ms = probe_queries(packer, train_set, train_c, texts, job.seed)
                budget, spent = forward_budget(opts, prior, train_set.queries, read_ms)
                layers, timing = measured_layers(base, packer, pairs, base_layers(base), float(budget or 0.0),
                                                 job.seed, opts["pooling"])
                busy = others.cores()
                timing = {**spent, **timing, "other_cores": None if busy is None else round(busy, 2)}
            except (ModelError, OSError, RuntimeError, ValueError) as e:  # an inference path refusing the probe
                timing = {"skipped": f"timing the layers failed ({type(e).__name__}): the fixed LAYER_TOKENS"}
    if not layers:
        layers = layers_within(LAYER_TOKENS, RERANK_DEPTH, tokens, base_layers(base))
    net = new_model(base, job.seed, layers, opts["pooling"]).to(job.device)
    mlm = post_train_for(job, net.base_model, base, opts["mlm_steps"]) if opts["mlm"] else None
    scorer = Scorer(net, packer, texts, job.device, opts["batch_size"])
    loss_fn = LOSSES[opts["loss"]]
    last: dict[str, Any] = {}
    best: dict[str, Any] = {}

    def dev_run() -> dict[str, list[tuple[str, float]]]:
        last["scores"] = scorer.score(dev.queries, {q: ids for q, (ids, _) in dev_c.items()})
        return reordered(dev_c, last["scores"], dev.qrels)

    evaluate = ranking_evaluator(dev.qrels, dev_run)

    def loss_of(model, groups: list[Group]):
        pairs: list[Pair] = []
        labels = []
        for g in groups:
            q = packer.tokens([g.query], limits.query)[0]
            pairs.extend(packer.pack(q, d) for d in packer.doc_tokens(g.docs))
            labels.append(g.labels)
        (rows, ids, types, mask), = packer.batches(pairs, len(pairs))
        flat = torch.empty(len(pairs), device=job.device, dtype=torch.float32)
        t = [torch.from_numpy(a).to(job.device) for a in (ids, types, mask)]
        flat[torch.from_numpy(rows).to(job.device)] = logits(model, *t)
        width = len(groups[0].docs)
        return loss_fn(flat.view(len(groups), width), torch.tensor(labels, device=job.device))

    per = opts["groups_per_batch"]
    pool = searcher.ids()
    phases = []
    if opts["weak_groups"] > 0:
        weak = list(weak_groups(searcher, texts, opts["weak_groups"], opts["negatives"], rng,
                                exclude=set(), depth=NEGATIVE_DEPTH))
        if len(weak) >= per:
            share = opts["weak_share"] * max(job.deadline - time.monotonic(), 0)
            phases.append(Phase("weak", lambda epoch: batches_of(weak, per), len(weak) // per, 1, share,
                                early_stop=False))
    heads = {q: ids for q, (ids, _) in train_c.items()}
    epoch_groups = lambda epoch: judged_groups(train_set, heads, texts, opts["negatives"],  # noqa: E731
                                               np.random.default_rng([job.seed, epoch]), top, pool)
    n_judged = sum(1 for rel in train_set.qrels.values() for g in rel.values() if g >= 1)
    phases.append(Phase("judged", lambda epoch: batches_of(epoch_groups(epoch), per), max(n_judged // per, 1),
                        opts["epochs"]))
    held_pairs = sum(len(ids) for ids, _ in held_c.values())
    dev_pairs = max(sum(len(ids) for ids, _ in dev_c.values()), 1)
    spread = max(job.deadline - time.monotonic(), 0) / max(opts["evals"], 1)
    config = LoopConfig(lr=opts["lr"], eval_every=opts["eval_every"], eval_every_s=spread, patience=opts["patience"],
                        seed=job.seed,
                        reserve_s=15.0, reserve_evals=0.0 if dev is held else held_pairs / dev_pairs,
                        eval_at_start=opts["eval_start"])
    rep = replica()  # data-parallel on Ray Train: DDP, a share of each batch, rank 0's clock and dev metric
    if rep is not None:
        phases, evaluate = [rep.shard(p) for p in phases], evaluate.wrapped(rep.from_rank0)
    result = train(rep.wrap(net) if rep is not None else net, phases, loss_of, evaluate, job.deadline, config,
                   job.device,
                   job.progress, description="fitting cross-encoder", on_best=lambda: best.update(last),
                   agree=rep.agree if rep is not None else None)
    if rep is not None and rep.rank != 0:
        return {}  # rank 0 scores the held-out queries, saves and reports

    if "scores" not in best:  # the budget ended before any evaluation: score dev once now
        best["scores"] = scorer.score(dev.queries, {q: ids for q, (ids, _) in dev_c.items()})
    held_scores = best["scores"] if dev is held else scorer.score(held.queries,
                                                                  {q: ids for q, (ids, _) in held_c.items()})
    weight, table = choose_weight(held, held_c, held_scores)
    held_prior = head_ndcg(held, held_c, {q: s for q, (_, s) in held_c.items()})
    mix = Combination(weight)
    dev_scores = best["scores"]
    dev_metrics = {
        "ndcg@10": head_ndcg(dev, dev_c, {q: mix.apply(dev_scores[q], dev_c[q][1]) for q in dev_scores}),
        "prior_ndcg@10": head_ndcg(dev, dev_c, {q: s for q, (_, s) in dev_c.items()}),
        "cross_ndcg@10": head_ndcg(dev, dev_c, dev_scores),
        "untrained_cross_ndcg@10": None if math.isnan(result.baseline) else result.baseline,
        "queries": len(dev.qrels),
    }
    save_model(net, job.workdir, base)
    write_curve(result.curve, job.workdir / "curve.png", f"cross-encoder on {job.train.name}",
                best_step=result.best_step)
    # a head the budget never trained is noise: on homedepot (loaded cores, 0 steps) it won 0.4337 vs 0.4305 on 200
    # held-out queries at weight 0.2, and `full` fell from ltr's 0.4374 to 0.4342 on dev at +465 ms p50
    # The weight is the best of 21 on these queries, so its gain there is optimistic: the stage is activated on the
    # gain a weight chosen on other held-out queries makes (`cross_validated_gain`, 5 folds), and only where it
    # exceeds one standard error of the per-query gains (the one-standard-error rule, Breiman et al.,
    # "Classification and Regression Trees", 1984): a stage that costs most of `full`'s latency must pay for it.
    # Scifact (133 held-out queries, AVX-512 EPYC, seed 13): weight 0.05, +0.0010 +- 0.0007 on the queries that
    # chose it but -0.0079 +- 0.0097 cross-validated (dev `full` 0.8059 with it, the ltr's 0.8074, at +38 ms p50):
    # inactive; homedepot (2,000): weight 0.25, +0.0035 +- 0.0017, cross-validated +0.0029 +- 0.0016: active.
    gain, gain_se = mix_gain(held, held_c, held_scores, weight)
    cv_gain, cv_se = cross_validated_gain(held, held_c, held_scores, MIX_FOLDS, job.seed)
    noise = cv_gain <= opts["min_gain_se"] * cv_se
    activate = result.steps > 0 and table[f"{weight:.2f}"] > held_prior and not noise
    # the cross active now, judged on these very queries against these stages, stays where it gains more (it passed
    # the same test when it was activated); judged elsewhere, a trained cross that does not pay retires it
    context = mix_context(job.index_path, searcher, held, held_prior_of)
    standing = standing_cross(job.index_path, context) if result.steps > 0 else None
    stays = standing is not None and (not activate or standing["cross_validated_gain"] >= cv_gain)
    if stays:
        activate = False
    return {
        "kind": KIND,
        "base": card.name,
        "reads_han": card.reads_han,
        "limits": asdict(limits),
        "fields": texts.fields,
        "combination": asdict(mix),
        "held_out": {"queries": len(held.qrels), "prior_ndcg@10": held_prior, "by_weight": table, "weight": weight,
                     "prior": held_prior_of, "gain": round(gain, 5), "gain_se": round(gain_se, 5),
                     "cross_validated_gain": round(cv_gain, 5), "cross_validated_gain_se": round(cv_se, 5),
                     "context": context},
        "dev": {k: round(v, 4) if isinstance(v, float) else v for k, v in dev_metrics.items()},
        "params": {k: opts[k] for k in DEFAULTS if k not in ("base",)}
        | {"threads": threads, "depth": RERANK_DEPTH, "layers": layers, "autocast": str(autocast_dtype(job.device)),
           "pair_tokens": tokens, **({"layer_timing": timing} if timing else {})},
        "training": {
            "steps": result.steps,
            "best_step": result.best_step,
            "train_queries": len(train_set.qrels),
            "weak_groups": phases[0].steps_per_epoch * per if phases[0].name == "weak" else 0,
            "stopped_early": result.stopped_early,
            "curve": result.curve,
        },
        "curve": "curve.png",
        "stopped_by_budget": result.stopped_by_budget,
        "activate": activate,
        # trained, and no mix beat the previous stage as fitted now: a cross active from an earlier fit (its mix chosen
        # against an earlier ltr) is retired with it, unless it was judged on the same queries and stages and won
        "retire": not activate and result.steps > 0 and not stays,
        **({"standing": standing} if stays else {}),
        "note": (
            f"mix weight {weight:.2f} chosen on {len(held.qrels)} held-out train queries"
            if activate
            else f"published inactive: the active {standing['model']} was judged on the same held-out queries "
                 f"against the same stages and gains more there ({standing['cross_validated_gain']:+.4f} against "
                 f"{cv_gain:+.4f}): it stays" if standing is not None and stays
            else "published inactive: the budget ended before a training step" if not result.steps
            else "published inactive: on held-out train queries no mix beat the previous stage alone"
            if table[f"{weight:.2f}"] <= held_prior
            else f"published inactive: a mix weight chosen on other held-out queries gains {cv_gain:+.4f} on new "
                 f"ones, within {opts['min_gain_se']:g} standard error(s) ({cv_se:.4f}) of the previous stage alone"
        ),
        "fit_seconds": round(time.monotonic() - t0, 1),
        **({"mlm": mlm} if mlm else {}),
    }

