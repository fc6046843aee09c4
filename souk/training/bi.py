"""Fitter `bi`: fine-tune the index's bi-encoder on its judged queries, then re-encode the corpus with it.

Loss: InfoNCE, a softmax over scaled cosine similarities of each query against its positive, every other
document in the batch (in-batch negatives: the other queries' positives and negatives), one hard negative
mined from the middle band of BM25's list (ranks 30-100 by default: deep enough to skip most unjudged
positives) and one random corpus document. Schedule: weak pairs from the corpus first (a title or a
sentence of a document as its pseudo-query), then the judged pairs. Early stopping measures nDCG@10 of the
encoder alone reordering each dev query's hybrid top `pool`; the model is published only when it beats
the starting encoder there, and then every document is re-encoded with it in one commit
(`souk.index.vectors.reencode`). Queries are encoded with the same model from then on (the index's
manifest names it).

Three ideas of the notes, each a boolean option (off by default until measured on held-out train queries):
- `distill`: the ranking the index serves teaches recall. The teacher is the index's `full` pipeline as it
  serves now (bi fits first, so these are the ltr/cross models of the previous `souk fit`; the cross stage
  is active only where its fitter found it beat ltr on held-out train queries, so `full` is the stronger of
  the two). Its top `distill_depth` for each train query gives the hard negatives of that query's positives
  and, in the teacher's standard deviations times `distill_scale`, the margin the student's
  (cos(q, d+) - cos(q, d-)) / temperature should have: margin-MSE (Hofstätter et al. 2020), weighted by
  `distill_weight` and added to InfoNCE. Without an active ltr or cross model it does nothing (manifest note).
- `temperature_schedule`: the InfoNCE temperature grows linearly from `temperature_start` to
  `temperature_max` over the planned steps instead of staying at `temperature`.
- `medium_negatives`: hard negatives from ranks `medium_band` of dense recall (the index's active encoder)
  instead of BM25's `band`, re-mined once with the model being trained when half the judged steps (or half
  their time) have passed: the corpus encoded and searched with FAISS.
Measured on scifact (36 steps, doc_length 64, seed 13, bi trained on 80% of train, ltr teacher fitted on the
same 80%): held-out train hybrid nDCG@10 0.7806 off; distill 0.7857, medium 0.7846, schedule 0.7850; dense
0.7312 off; distill 0.7330, medium 0.7273, schedule 0.7263 (133 queries: within noise; distill also led on dev).

On 2 CPU cores a step (32 queries, each with a positive, a hard and a random negative) of short product
titles takes about a second: 15 minutes of it lifted homedepot dev hybrid nDCG@10 from 0.389 to 0.415.
Misuse: reading the dev figure in the manifest as a test figure (dev chose the checkpoint).
"""
from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from souk.errors import ConfigError
from souk.training.distributed import replica
from souk.training.data import DocTexts, Group, judged_groups, max_grade, weak_groups
from souk.training.fit import FitJob, register_fitter
from souk.training.kit import Heads, candidates, ranking_evaluator, reordered, sample, split_train, write_curve
from souk.training.loop import LoopConfig, Phase, autocast_dtype, set_threads, train
from souk.training.losses import margin_mse, temperature_at
from souk.training.mlm import post_train_for

KIND = "bi-encoder"
DEFAULTS: dict[str, Any] = {
    "base": None,             # model directory to start from (default: the model the index's vectors came from)
    "mlm": False,             # domain post-training first: `mlm_steps` whole-word MLM steps (souk.training.mlm)
    "mlm_steps": 200,
    "temperature": 0.05,      # softmax temperature of the cosine similarities
    "lr": 2e-5,
    "queries_per_batch": 32,
    "hard_negatives": 1,      # per judged positive, from the recall band below
    "random_negatives": 1,    # per group, uniformly from the corpus
    "band": [30, 100],        # ranks of BM25's list the hard negatives come from
    "epochs": 3,              # passes over the judged pairs at most
    "weak_pairs": 2000,       # pseudo-query pairs from the corpus (0: none)
    "weak_share": 0.3,        # at most this share of the training time on them
    "doc_length": 128,        # tokens of a document while training (the index encodes up to its field's max_length)
    "query_length": 48,
    "dev_max": 80,            # dev queries for early stopping (a seeded sample beyond this)
    "pool": 30,               # each dev query's hybrid top-N the encoder reorders
    "evals": 4,
    "patience": 2,
    "min_gain": 0.002,        # published (and the corpus re-encoded) only when dev rises at least this much
    "eval_every": None,       # steps between dev evaluations (None: `evals` spread over the time)
    "distill": True,          # margin-MSE from the index's `full` pipeline (its active ltr/cross) over its top
    "distill_depth": 20,      # ... candidates of each train query
    "distill_weight": 1.0,    # the margin-MSE term's weight next to InfoNCE
    "distill_scale": 2.0,     # student logits (cosine / temperature) per standard deviation of the teacher's scores
    "temperature_schedule": False,  # InfoNCE temperature growing from start to max over the steps
    "temperature_start": 0.02,
    "temperature_max": 0.1,
    "medium_negatives": False,  # hard negatives from dense recall ranks `medium_band`, re-mined once mid-training
    "medium_band": [20, 40],
}
Batch = list[tuple[str, list[str], list[float]]]  # (query, [positive, negatives...], teacher margin per negative)


def _vector_field(index: Any) -> Any:
    fields = index.schema.vector_fields
    if len(fields) != 1:
        raise ConfigError(f"bi: the index has {len(fields)} vector fields; it needs exactly one to fine-tune "
                          "(index with --vectors)")
    return fields[0]


def applies(schema: Any, index: Any) -> bool:
    """An index with one vector field whose encoder reads its text."""
    if len(schema.vector_fields) != 1:
        return False
    from souk.index.vectors import field_params
    from souk.models.registry import model_card
    from souk.training.wordvec import reads_han

    return model_card(field_params(index, schema.vector_fields[0])["model"]).reads_han or not reads_han(schema, index)


def activate_bi(index_path: Path, model_dir: Path) -> dict[str, Any]:
    """Re-encode the index's documents with a fitted bi-encoder: the step that makes it the active one."""
    from souk.index import Index
    from souk.index.vectors.reencode import reencode
    from souk.progress import progress_bar

    docs = Index.open(index_path).searcher().num_docs
    with progress_bar("re-encoding the corpus", docs) as advance:
        return reencode(index_path, str(model_dir), progress=advance)


class PairEncoder:
    """The transformer being trained, as souk encodes with it: mean-pooled, unit-length vectors."""

    def __init__(self, net: Any, base: Path, device_name: str, doc_length: int, query_length: int):
        from tokenizers import Tokenizer

        self.net, self.device = net, device_name
        self._tok = {}
        for name, length in (("doc", doc_length), ("query", query_length)):
            tok = Tokenizer.from_file(str(base / "tokenizer.json"))
            tok.enable_truncation(length)
            tok.enable_padding()
            self._tok[name] = tok

    def __call__(self, texts: Sequence[str], kind: str):
        """(len(texts), dim) unit vectors, with gradients when the net is training."""
        import torch

        from souk.models.backends import mean_pool

        encs = self._tok[kind].encode_batch([str(t).strip() for t in texts])
        ids = torch.tensor([e.ids for e in encs], device=self.device)
        mask = torch.tensor([e.attention_mask for e in encs], device=self.device)
        hidden = self.net(input_ids=ids, attention_mask=mask).last_hidden_state
        return torch.nn.functional.normalize(mean_pool(hidden.float(), mask), dim=-1)

    def encode(self, texts: Sequence[str], kind: str, batch: int = 64) -> np.ndarray:
        import torch

        dtype = autocast_dtype(self.device)
        out = []
        with torch.inference_mode(), torch.autocast(self.device, dtype=dtype or torch.float32,
                                                    enabled=dtype is not None):
            for start in range(0, len(texts), batch):
                out.append(self(texts[start:start + batch], kind).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 1), dtype=np.float32)


def doc_text(doc: tuple[str, str]) -> str:
    """A (title, text) pair as the one string a vector field encodes (its fields joined)."""
    return " ".join(p for p in doc if p)


def teacher_heads(index_path: Path, searcher: Any, queries: dict[str, str], depth: int,
                  progress: bool = False) -> tuple[Heads, dict[str, Any]]:
    """Each query's top `depth` of the index's `full` pipeline with the teacher's scores centred per query
    and divided by their standard deviation over all queries, and what taught (empty without an active ltr
    or cross model: recall alone teaches nothing new)."""
    from souk.models.store import ModelStore
    from souk.ranking.pipeline import build_pipeline

    store = ModelStore(index_path)
    stages = [s for s in ("ltr", "cross") if store.active(s) is not None]
    if not stages:
        return {}, {"teacher": None, "note": "no active ltr or cross model to learn from (fit them once first)"}
    heads = candidates(build_pipeline("full", searcher), queries, depth, progress)
    centred = {q: s - s.mean() for q, (ids, s) in heads.items() if len(ids) >= 2 and np.isfinite(s).all()}
    sigma = float(np.concatenate(list(centred.values())).std()) if centred else 0.0
    if sigma <= 0:
        return {}, {"teacher": "full", "stages": stages, "note": "the teacher's scores do not vary"}
    out = {q: (heads[q][0], (c / sigma).astype(np.float32)) for q, c in centred.items()}
    return out, {"teacher": "full", "stages": stages, "queries": len(out), "depth": depth, "sigma": round(sigma, 5)}


def dense_band(encoder: "PairEncoder", texts: DocTexts, corpus: Sequence[str], queries: dict[str, str],
               lo: int, hi: int) -> dict[str, list[str]]:
    """Ranks `lo`..`hi` of each query in the corpus as `encoder` ranks it now (exact FAISS inner product)."""
    import faiss

    vectors = np.ascontiguousarray(encoder.encode([doc_text(d) for d in texts.get(corpus)], "doc"), dtype=np.float32)
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    qids = list(queries)
    found = flat.search(np.ascontiguousarray(encoder.encode([queries[q] for q in qids], "query"),
                                             dtype=np.float32), min(hi, len(corpus)))[1]
    return {q: [corpus[j] for j in row[lo:hi] if j >= 0] for q, row in zip(qids, found)}


def infonce(queries, docs, temperature: float, doc_texts: Sequence[str] | None = None):
    """Softmax cross-entropy of query i against document i among all documents of the batch.

    With `doc_texts`, a column holding the same text as query i's positive (another query of the batch
    sharing that product, or a sampled negative that is the positive itself) is left out of query i's
    softmax rather than pushed away as a negative."""
    import torch

    scores = (queries @ docs.T / temperature).float()
    n = len(queries)
    if doc_texts is not None:  # the mask is built on the scores' device (CUDA too)
        same = torch.tensor([[j != i and doc_texts[j] == doc_texts[i] for j in range(len(doc_texts))]
                             for i in range(n)],
                            dtype=torch.bool, device=scores.device)
        scores = scores.masked_fill(same, float("-inf"))
    return torch.nn.functional.cross_entropy(scores, torch.arange(n, device=queries.device))


@register_fitter("bi", applies=applies, share=1.0, order=10, on_activate=activate_bi, distributed=True,
                 options=DEFAULTS)
def fit_bi(job: FitJob) -> dict[str, Any]:
    """Fine-tune, keep the best dev checkpoint, save into `job.workdir`; returns the manifest."""
    from transformers import AutoModel

    from souk.index import Index
    from souk.index.vectors import field_params
    from souk.models.backends import quiet_transformers
    from souk.models.registry import model_card
    from souk.ranking.pipeline import build_pipeline
    from souk.training.weights import save_model

    t0 = time.monotonic()
    opts = {**DEFAULTS, **job.options}
    if opts["temperature_schedule"] and not 0 < opts["temperature_start"] <= opts["temperature_max"]:
        raise ConfigError(f"bi: temperature_start ({opts['temperature_start']}) must be positive and at most "
                          f"temperature_max ({opts['temperature_max']})")
    lo, hi = opts["band"]
    mlo, mhi = opts["medium_band"]
    threads = set_threads()
    rng = np.random.default_rng(job.seed)
    index = Index.open(job.index_path)
    vf = _vector_field(index)
    current = model_card(field_params(index, vf)["model"])
    card = model_card(opts["base"] or current.meta.get("base") or current.name)  # a refit starts from the base again
    quiet_transformers()
    import torch

    torch.manual_seed(job.seed)
    net = AutoModel.from_pretrained(str(card.path)).to(job.device)
    mlm = post_train_for(job, net, card.path, opts["mlm_steps"]) if opts["mlm"] else None
    encoder = PairEncoder(net, card.path, job.device, opts["doc_length"], opts["query_length"])
    searcher = index.searcher()
    texts = DocTexts(searcher)
    if job.dev is not None:
        train_set, dev = job.train, sample(job.dev, opts["dev_max"], rng)
    else:
        train_set, dev = split_train(job.train, 0.2, opts["dev_max"], rng)
    hybrid = build_pipeline("hybrid", searcher)
    dev_pool = candidates(hybrid, dev.queries, opts["pool"])
    pool_ids = sorted({d for ids, _ in dev_pool.values() for d in ids})
    pool_texts = [doc_text(d) for d in texts.get(pool_ids)]
    band = {q: ids[lo:hi] for q, (ids, _) in candidates(build_pipeline("bm25", searcher), train_set.queries, hi,
                                                           job.progress).items()}
    corpus = searcher.ids()
    top = max_grade(job.train, job.dev)
    ideas: dict[str, Any] = {}
    teacher: Heads = {}
    if opts["distill"]:
        teacher, ideas["distill"] = teacher_heads(job.index_path, searcher, train_set.queries, opts["distill_depth"],
                                                  job.progress)
    marks = {train_set.queries[q]: dict(zip(ids, z.tolist())) for q, (ids, z) in teacher.items()}
    medium: dict[str, list[str]] = {}
    if opts["medium_negatives"]:
        medium = {q: ids[mlo:mhi] for q, (ids, _) in candidates(build_pipeline("dense", searcher), train_set.queries,
                                                                 mhi, job.progress).items()}
        ideas["medium_negatives"] = {"band": [mlo, mhi], "mined_by": "the index's dense recall", "remined_at": None}

    def negatives_from() -> dict[str, list[str]]:
        """Each train query's hard-negative candidates: the teacher's list (where it holds a positive of
        the query), else the medium dense band, else BM25's band."""
        out = {**band, **medium}
        for q, (ids, _) in teacher.items():
            if any(train_set.qrels[q].get(d, 0) >= 1 for d in ids):
                out[q] = list(ids)
        return out

    def dev_run() -> dict[str, list[tuple[str, float]]]:
        docs = dict(zip(pool_ids, encoder.encode(pool_texts, "doc")))
        qids = list(dev_pool)
        qv = encoder.encode([dev.queries[q] for q in qids], "query")
        scores = {q: np.array([float(docs[d] @ v) for d in dev_pool[q][0]], dtype=np.float32) for q, v in zip(qids, qv)}
        return reordered(dev_pool, scores, dev.qrels)

    evaluate = ranking_evaluator(dev.qrels, dev_run)

    def with_random(groups: Sequence[Group], r: np.random.Generator) -> Batch:
        out = []
        for g in groups:
            extra = [corpus[int(i)] for i in r.integers(len(corpus), size=opts["random_negatives"])]
            taught = marks.get(g.query, {})
            pos = taught.get(g.ids[0], math.nan) if g.ids else math.nan
            margins = [pos - taught.get(d, math.nan) for d in g.ids[1:]] if g.ids else [math.nan] * (len(g.docs) - 1)
            out.append((g.query, [doc_text(d) for d in g.docs] + [doc_text(d) for d in texts.get(extra)],
                        margins + [math.nan] * len(extra)))
        return out

    state: dict[str, Any] = {"step": 0, "planned": 1, "taught_pairs": 0}

    def loss_of(model, batch: Batch):
        import torch

        tau = (temperature_at(state["step"], state["planned"], opts["temperature_start"], opts["temperature_max"])
               if opts["temperature_schedule"] else opts["temperature"])
        state["step"] += 1
        queries = encoder([q for q, _, _ in batch], "query")
        docs = [ds[0] for _, ds, _ in batch] + [d for _, ds, _ in batch for d in ds[1:]]
        vectors = encoder(docs, "doc")
        loss = infonce(queries, vectors, tau, docs)
        rows, cols, targets, at = [], [], [], len(batch)
        for i, (_, ds, margins) in enumerate(batch):
            for j, m in enumerate(margins):
                if math.isfinite(m):
                    rows.append(i)
                    cols.append(at + j)
                    targets.append(m * opts["distill_scale"])
            at += len(ds) - 1
        if rows:  # the student's margin in logits of the base temperature, against the teacher's
            state["taught_pairs"] += len(rows)
            r, c = torch.tensor(rows, device=queries.device), torch.tensor(cols, device=queries.device)
            pos = (queries[r] * vectors[r]).sum(-1) / opts["temperature"]
            neg = (queries[r] * vectors[c]).sum(-1) / opts["temperature"]
            loss = loss + opts["distill_weight"] * margin_mse(pos, neg, torch.tensor(targets, device=queries.device))
        return loss

    per = opts["queries_per_batch"]

    def batches(groups: Batch):
        for start in range(0, len(groups) - per + 1, per):
            yield groups[start:start + per]

    phases = []
    if opts["weak_pairs"] > 0:
        weak = with_random(list(weak_groups(searcher, texts, opts["weak_pairs"], opts["hard_negatives"], rng)), rng)
        if len(weak) >= per:
            share = opts["weak_share"] * max(job.deadline - time.monotonic(), 0)
            phases.append(Phase("weak", lambda epoch: batches(weak), len(weak) // per, 1, share, early_stop=False))

    n_judged = sum(1 for rel in train_set.qrels.values() for g in rel.values() if g >= 1)
    judged_steps = max(n_judged // per, 1) * opts["epochs"]

    def remine_due() -> bool:
        """Medium negatives are re-mined once, at half the judged steps or half the judged phase's time."""
        if not medium or ideas["medium_negatives"]["remined_at"] is not None:
            return False
        return state["judged"] >= judged_steps // 2 or time.monotonic() >= state["judged_mid"]

    def judged_batches(epoch: int, salt: int) -> list[Batch]:
        r = np.random.default_rng([job.seed, epoch, salt] if salt else [job.seed, epoch])
        return list(batches(with_random(judged_groups(train_set, negatives_from(), texts, opts["hard_negatives"], r,
                                                      top, corpus), r)))

    def judged(epoch: int):
        if "judged_mid" not in state:
            state["judged"], now = 0, time.monotonic()
            state["judged_mid"] = now + max(job.deadline - now - 30.0, 0) / 2
        todo, i = judged_batches(epoch, 0), 0
        while i < len(todo):
            if remine_due():  # with the model as trained so far (dropout off), then this epoch's rest from it
                t0, was_training = time.monotonic(), encoder.net.training
                encoder.net.eval()
                medium.update(dense_band(encoder, texts, corpus, train_set.queries, mlo, mhi))
                encoder.net.train(was_training)
                ideas["medium_negatives"].update(remined_at=state["step"], remine_s=round(time.monotonic() - t0, 1))
                todo = judged_batches(epoch, 1)
            yield todo[i]
            i += 1
            state["judged"] += 1

    phases.append(Phase("judged", judged, max(n_judged // per, 1), opts["epochs"]))
    state["planned"] = sum(p.steps_per_epoch * p.epochs for p in phases)
    if opts["temperature_schedule"]:
        ideas["temperature_schedule"] = {"start": opts["temperature_start"], "max": opts["temperature_max"],
                                         "over_steps": state["planned"]}
    spread = max(job.deadline - time.monotonic(), 0) / max(opts["evals"], 1)
    config = LoopConfig(lr=opts["lr"], eval_every=opts["eval_every"] or 10**9,
                        eval_every_s=None if opts["eval_every"] else spread, patience=opts["patience"], seed=job.seed,
                        reserve_s=30.0, eval_at_start=True)
    rep = replica()  # data-parallel on Ray Train: DDP, a shard of the batches, rank 0's clock and dev metric
    if rep is not None:
        if getattr(net, "pooler", None) is not None:  # unused by mean pooling (no gradient ever): DDP wants one for
            net.pooler.requires_grad_(False)          # every parameter it trains
        encoder.net = rep.wrap(net)
        phases, evaluate = [rep.shard(p) for p in phases], evaluate.wrapped(rep.from_rank0)
    result = train(encoder.net, phases, loss_of, evaluate, job.deadline, config, job.device, job.progress,
                   description="fitting bi-encoder", agree=rep.agree if rep is not None else None)
    encoder.net = net
    if rep is not None and rep.rank != 0:
        return {}  # rank 0 saves and reports
    improved = result.best >= result.baseline + opts["min_gain"]
    if "distill" in ideas:
        ideas["distill"]["taught_pairs"] = state["taught_pairs"]
    save_model(net, job.workdir, card.path)
    for extra in ("modules.json", "sentence_bert_config.json", "1_Pooling", "2_Normalize"):
        src = card.path / extra
        if src.is_dir():
            shutil.copytree(src, job.workdir / extra, dirs_exist_ok=True)
        elif src.is_file():
            shutil.copyfile(src, job.workdir / extra)
    write_curve(result.curve, job.workdir / "curve.png", f"bi-encoder on {job.train.name}", best_step=result.best_step)
    return {
        "kind": KIND,
        "base": card.name,
        "reads_han": card.reads_han,
        "field": vf.name,
        "dev": {
            "ndcg@10": round(result.best, 4),
            "start_ndcg@10": round(result.baseline, 4),
            "measure": f"encoder alone reordering hybrid top {opts['pool']}",
            "queries": len(dev.qrels),
        },
        "params": {k: opts[k] for k in DEFAULTS if k != "base"}
        | {"threads": threads, "autocast": str(autocast_dtype(job.device))},
        "training": {
            "steps": result.steps,
            "best_step": result.best_step,
            "train_queries": len(train_set.qrels),
            "stopped_early": result.stopped_early,
            "curve": result.curve,
        },
        "ideas": ideas,
        "curve": "curve.png",
        "stopped_by_budget": result.stopped_by_budget,
        "activate": improved,
        "note": (
            "the corpus is re-encoded with it"
            if improved
            else f"published inactive: dev {result.best:.4f} did not beat the starting encoder's {result.baseline:.4f}"
        ),
        "fit_seconds": round(time.monotonic() - t0, 1),
        **({"mlm": mlm} if mlm else {}),
    }

