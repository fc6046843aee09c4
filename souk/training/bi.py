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

On 2 CPU cores a step (32 queries, each with a positive, a hard and a random negative) of short product
titles takes about a second: 15 minutes of it lifted homedepot dev hybrid nDCG@10 from 0.389 to 0.415.
Misuse: reading the dev figure in the manifest as a test figure (dev chose the checkpoint).
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from souk.errors import ConfigError
from souk.training.distributed import replica
from souk.training.data import DocTexts, Group, judged_groups, max_grade, weak_groups
from souk.training.fit import FitJob, register_fitter
from souk.training.kit import candidates, ranking_evaluator, reordered, sample, split_train, write_curve
from souk.training.loop import LoopConfig, Phase, autocast_dtype, set_threads, train
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
}


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


@register_fitter("bi", applies=applies, share=1.0, order=10, on_activate=activate_bi, distributed=True)
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
    unknown = set(job.options) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"bi: unknown option {sorted(unknown)[0]!r}; allowed: {', '.join(sorted(DEFAULTS))}")
    opts = {**DEFAULTS, **job.options}
    lo, hi = opts["band"]
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

    def dev_run() -> dict[str, list[tuple[str, float]]]:
        docs = dict(zip(pool_ids, encoder.encode(pool_texts, "doc")))
        qids = list(dev_pool)
        qv = encoder.encode([dev.queries[q] for q in qids], "query")
        scores = {q: np.array([float(docs[d] @ v) for d in dev_pool[q][0]], dtype=np.float32) for q, v in zip(qids, qv)}
        return reordered(dev_pool, scores, dev.qrels)

    evaluate = ranking_evaluator(dev.qrels, dev_run)

    def with_random(groups: Sequence[Group], r: np.random.Generator) -> list[tuple[str, list[str]]]:
        out = []
        for g in groups:
            extra = [corpus[int(i)] for i in r.integers(len(corpus), size=opts["random_negatives"])]
            out.append((g.query, [doc_text(d) for d in g.docs] + [doc_text(d) for d in texts.get(extra)]))
        return out

    def loss_of(model, batch: list[tuple[str, list[str]]]):
        queries = encoder([q for q, _ in batch], "query")
        docs = [ds[0] for _, ds in batch] + [d for _, ds in batch for d in ds[1:]]
        return infonce(queries, encoder(docs, "doc"), opts["temperature"], docs)

    per = opts["queries_per_batch"]

    def batches(groups: list[tuple[str, list[str]]]):
        for start in range(0, len(groups) - per + 1, per):
            yield groups[start:start + per]

    phases = []
    if opts["weak_pairs"] > 0:
        weak = with_random(list(weak_groups(searcher, texts, opts["weak_pairs"], opts["hard_negatives"], rng)), rng)
        if len(weak) >= per:
            share = opts["weak_share"] * max(job.deadline - time.monotonic(), 0)
            phases.append(Phase("weak", lambda epoch: batches(weak), len(weak) // per, 1, share, early_stop=False))

    def judged(epoch: int):
        r = np.random.default_rng([job.seed, epoch])
        return batches(with_random(judged_groups(train_set, band, texts, opts["hard_negatives"], r, top, corpus), r))

    n_judged = sum(1 for rel in train_set.qrels.values() for g in rel.values() if g >= 1)
    phases.append(Phase("judged", judged, max(n_judged // per, 1), opts["epochs"]))
    spread = max(job.deadline - time.monotonic(), 0) / max(opts["evals"], 1)
    config = LoopConfig(lr=opts["lr"], eval_every=10**9, eval_every_s=spread, patience=opts["patience"], seed=job.seed,
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

