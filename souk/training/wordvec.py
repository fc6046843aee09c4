"""`souk fit --stages wordvec`: word and character vectors for an index without a pretrained encoder
(Chinese), then a small dual encoder fine-tuned on the judged pairs.

1. Features of every document and train query (`souk.models.word_vectors.text_features`: analyzer terms,
   Han characters and bigrams); a query log (option `query_log`, one query a line) adds sentences.
2. gensim fastText over the term sequences gives every feature a vector; SIF weights and the corpus' first
   principal component make the unsupervised model (its dev nDCG@10 is the curve's first point).
3. Fine-tuning (torch, CPU or CUDA): the same sentence-vector formula (a weighted sum of feature vectors,
   weights learned) as a dual encoder with InfoNCE over in-batch negatives plus one BM25-mined negative
   per pair (ranks 10-60, judged positives removed); early-stopped on the dev split's nDCG@10 of the
   word-vector ranking alone, stopped at the deadline with the best epoch kept.
4. The fusion weight of `wordvec` next to BM25 (weighted min-max, as the recall stage fuses) is chosen on
   a held-out tenth of the train queries the encoder never saw; the manifest keeps it and the recall
   stage uses it as the default weight.
The model directory holds the model, the corpus view of the commit it was fitted on (feature ids and a
FAISS inner-product index) and `curve.png`. Misuse: choosing the fusion weight on dev.
"""
from __future__ import annotations

import random
import re
import time
from typing import Any, Sequence

import numpy as np

from souk.analysis.normalize import HAN_CLASS, han_share, normalize as normalize_text
from souk.errors import ConfigError, DatasetError
from souk.models.word_vectors import (LATIN_GRAMS, SIF_A, WordVectors, feature_level, feature_vectors, first_component,
                                      sif_weights, text_features, train_gensim)
from souk.progress import progress_bar
from souk.retrieval.fusion import fuse
from souk.retrieval.wordvec import STAGE, CorpusView, corpus_texts, search_analyzer
from souk.training.fit import FitJob, register_fitter
from souk.training.kit import DevEvaluator, epoch_curve, hold_out, ndcg10, write_epoch_curve
from souk.training.loop import LoopConfig, Phase, train
from souk.types import Ranking

_HAN = re.compile(f"[{HAN_CLASS}]+")
HAN_MIN = 0.3   # an index whose sampled text is at least this share Han gets word vectors by default
# Chosen on qbqtc with the fusion weight measured on held-out train queries (dev only early-stops): fine-tuning
# from random vectors (dev alone 0.680 after one epoch) beat fine-tuning from the gensim fastText vectors (0.530
# after three; their directions are too alike for contrastive learning to separate quickly), and a BM25-mined
# negative per pair helped the fused list (held-out 0.8067 vs 0.8035). `init = "gensim"` keeps the other path;
# gensim still trains the vectors when there are no judged pairs (SIF sentence vectors, unsupervised).
DEFAULTS: dict[str, Any] = {
    "dim": 128, "gensim_epochs": 5, "epochs": 3, "batch_size": 128, "lr": 0.01, "temperature": 0.05,
    "hard_negatives": True, "held_out": 0.1, "patience": 2, "query_log": None, "init": "random",
    "pretrain": False,  # masked-word pre-training of the random vectors on the corpus and queries first (below)
    "pretrain_pairs": 20000, "pretrain_epochs": 2,
    # character n-grams of longer Latin runs as features (`souk.models.word_vectors`; 0: off). qbqtc, `--budget-min 20
    # --seed 13`, AVX-512 EPYC: dev `full` 0.8345 -> 0.8566 (index with --vectors 0.8507 -> 0.8602), the ltr's 5-fold
    # held-out-train nDCG@10 0.8263 -> 0.8497 (0.8452 -> 0.8564), wordvec's fusion on 1,152 held-out train queries
    # 0.8051 -> 0.8207; the gain is on the 27% of queries with Latin letters or digits (0.745 -> 0.824).
    "latin_grams": 3,
}
WEIGHT_GRID = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0)


def reads_han(schema, index=None, sample: int = 200) -> bool:
    """True when a search field's analyzer reads Han and (given the index) its documents are mostly Han."""
    from souk.analysis.registry import get_analyzer

    fields = [schema.fields[n] for n in schema.search_fields]
    if not any(not get_analyzer(f.analyzer).whole for f in fields):
        return False
    if index is None:
        return True
    searcher = index.searcher()
    ids = searcher.ids()[:sample]
    texts = [" ".join(str(v) for v in (d or {}).values() if isinstance(v, str)) for d in searcher.docs(ids)]
    return bool(texts) and han_share(" ".join(texts)) >= HAN_MIN


@register_fitter(STAGE, applies=reads_han, share=0.45, order=20, options=DEFAULTS)
def fit_wordvec(job: FitJob) -> dict[str, Any]:
    """Train, fine-tune and write a word-vector model into `job.workdir`; returns its manifest fields."""
    from souk.index import Index

    opts = {**DEFAULTS, **{k: v for k, v in job.options.items() if k in DEFAULTS}}
    t_start = time.monotonic()
    timings: dict[str, float] = {}

    def lap(name: str) -> None:
        timings[name] = round(time.monotonic() - t_start - sum(timings.values()), 1)
    searcher = Index.open(job.index_path).searcher()
    analyzer, user_dict = search_analyzer(searcher.schema), searcher.schema.analysis.get("user_dict")
    grams = opts["latin_grams"]
    if grams not in LATIN_GRAMS:
        raise ConfigError(f"option wordvec.latin_grams: one of {', '.join(map(str, LATIN_GRAMS))} (0: off), "
                          f"not {grams!r}")
    rng = random.Random(job.seed)
    np.random.seed(job.seed)

    keys, texts, digests = corpus_texts(searcher)
    if not len(keys):
        raise DatasetError("the index has no documents to learn word vectors from")
    with progress_bar("wordvec: features", len(texts) + len(job.train.queries), enabled=job.progress) as advance:
        doc_features = []
        for t in texts:
            doc_features.append(text_features(t, analyzer, user_dict, grams))
            advance()
        query_features = {}
        for qid, text in job.train.queries.items():
            query_features[qid] = text_features(text, analyzer, user_dict, grams)
            advance()
    lap("features")
    learn, held = hold_out(sorted(job.train.queries), opts["held_out"] if len(job.train.queries) >= 50 else 0.0, rng, 0)
    log_features = _log_features(opts["query_log"], analyzer, user_dict, grams)

    # vocabulary: every feature of the corpus and the learning queries (and log features seen twice)
    counts: dict[str, int] = {}
    for feats in [*doc_features, *(query_features[q] for q in learn)]:
        for f in feats:
            counts[f] = counts.get(f, 0) + 1
    log_counts: dict[str, int] = {}
    for feats in log_features:
        for f in feats:
            log_counts[f] = log_counts.get(f, 0) + 1
    for f, c in log_counts.items():
        if c >= 2 or f in counts:
            counts[f] = counts.get(f, 0) + c
    features = sorted(counts, key=lambda f: (-counts[f], f))

    pairs = [(q, d) for q in learn for d, g in job.train.qrels[q].items() if g > 0]
    if opts["init"] == "gensim" or not pairs:
        terms_only = [[f for f in feats if feature_level(f) == 0]
                      for feats in [*doc_features, *(query_features[q] for q in learn), *log_features]]
        wv = train_gensim(terms_only, dim=int(opts["dim"]), epochs=int(opts["gensim_epochs"]), seed=job.seed, workers=2)
        vectors = feature_vectors(wv, features)
        lap("gensim")
    else:  # measured on qbqtc: fine-tuning from random vectors beats starting from fastText's (see DEFAULTS)
        vectors = np.random.default_rng(job.seed).normal(0.0, 0.1, (len(features), int(opts["dim"]))).astype(np.float32)
    pretrained: dict[str, Any] = {}
    if opts["pretrain"]:
        sentences = list(texts) + [job.train.queries[q] for q in learn] + _log_lines(opts["query_log"])
        vectors, pretrained = pretrain_vectors(features, vectors, sentences, analyzer, user_dict, job, opts)
        lap("pretrain")
    weights = sif_weights(np.asarray([counts[f] for f in features]), SIF_A)
    base = WordVectors(features, vectors, weights, None, analyzer, user_dict, {"latin_grams": grams})
    view = _view_from_features(base, keys, doc_features, digests, searcher.commit_id)
    base.pc = first_component(view.reencode(base).vectors)
    view = view.reencode(base)

    dev = job.dev
    evaluate_on = dev if dev is not None and len(dev) else None
    eval_queries = ({q: evaluate_on.queries[q] for q in evaluate_on.queries}, evaluate_on.qrels) if evaluate_on else \
        ({q: job.train.queries[q] for q in held}, {q: job.train.qrels[q] for q in held})
    eval_name = f"{evaluate_on.name}/{evaluate_on.split}" if evaluate_on else "held-out train"
    curve = [_ndcg_alone(base, view, searcher, *eval_queries)]
    lap("unsupervised_eval")
    best_model, best_score, best_epoch = base, curve[0], 0
    stopped_by_budget = False

    if pairs and job.seconds_left > 5:
        best_model, best_score, best_epoch, more, stopped_by_budget = _fine_tune(
            base, view, searcher, pairs, query_features, job, opts, rng, eval_queries, best_score)
        curve += more
    best_model = best_model.as_stored()
    view = view.reencode(best_model)
    lap("fine_tune")

    weight, held_scores = _fusion_weight(best_model, view, searcher, job, held)
    best_model.meta = {"fine_tuned": best_epoch > 0, "latin_grams": grams}
    best_model.save(job.workdir)
    view.save(job.workdir / "corpus")
    write_epoch_curve(curve, best_epoch, f"wordvec alone, {eval_name}",
                      "wordvec: nDCG@10 by epoch (0 = unsupervised SIF vectors)", job.workdir / "curve.png")
    lap("fusion_weight_and_save")
    latin = sum(1 for f in features if feature_level(f) == 0 and f.isascii())
    return {
        "kind": "wordvec",
        "base_model": ("fastText (gensim) trained on the corpus and train queries"
                       + (" and a query log" if log_features else "")
                       if opts["init"] == "gensim" or not pairs else "none (random vectors, SIF weights)"),
        "analyzer": analyzer,
        "reads": ["han"] + (["latin"] if latin else []),
        "features": {"total": len(features), "terms": int((best_model.levels == 0).sum()),
                     "chars": int((best_model.levels == 1).sum()), "bigrams": int((best_model.levels == 2).sum()),
                     "latin_grams": grams},
        "hyper": {k: v for k, v in opts.items() if k != "query_log"},
        "query_log": str(opts["query_log"]) if opts["query_log"] else None,
        "dev": {"ndcg@10": round(best_score, 4), "on": eval_name, "ranking": "wordvec alone"},
        "curve": {"ndcg@10": [round(v, 4) for v in curve], "best_epoch": best_epoch},
        "fusion_weight": weight,
        "fusion_held_out": held_scores,
        "pairs": len(pairs), "held_out_queries": len(held),
        "commit_id": searcher.commit_id,
        "stopped_by_budget": stopped_by_budget,
        "timings_s": timings,
        **({"pretrain": pretrained} if pretrained else {}),
    }


def _view_from_features(model: WordVectors, keys: np.ndarray, doc_features: Sequence[list[str]], digests: np.ndarray,
                        commit_id: str) -> CorpusView:
    """A corpus view from features already computed (the fitter featurized every document once)."""
    order = np.argsort(keys, kind="stable")
    rows = [(r := model.ids(doc_features[i]))[r >= 0] for i in order]
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    flat = np.concatenate(rows).astype(np.int32) if rows else np.zeros(0, np.int32)
    return CorpusView(np.asarray(keys, np.int64)[order], offsets, flat, np.asarray(digests, np.uint64)[order],
                      np.zeros((len(keys), model.dim), np.float32), commit_id)


def _log_features(path, analyzer: str, user_dict: str | None, latin: int = 0,
                  limit: int = 200_000) -> list[list[str]]:
    return [text_features(line, analyzer, user_dict, latin) for line in _log_lines(path, limit)]


def _log_lines(path, limit: int = 200_000) -> list[str]:
    if not path:
        return []
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"query log {p} does not exist; pass a text file with one query a line")
    with p.open(encoding="utf-8", errors="replace") as fh:
        return [line.strip() for _, line in zip(range(limit), fh) if line.strip()]


def masked_pairs(sentences: Sequence[str], n: int, rng: random.Random,
                 user_dict: str | None = None) -> list[tuple[str, str]]:
    """Up to `n` (context, word) pairs: a whole jieba word (precise mode, Han, 2+ characters) cut out of a
    sentence of the corpus or the queries, and the sentence without it (a space where it was)."""
    from souk.analysis.tokenize import han_segments

    out: list[tuple[str, str]] = []
    order = list(range(len(sentences)))
    rng.shuffle(order)
    for i in order:
        text = normalize_text(sentences[i])
        words = [(m.start() + s, m.start() + e) for m in _HAN.finditer(text)
                 for w, s, e in han_segments(m.group(), user_dict) if len(w) >= 2]
        if len(words) < 2 and not (words and len(text) > words[0][1] - words[0][0] + 1):
            continue  # nothing would be left to predict it from
        start, end = words[rng.randrange(len(words))]
        out.append((text[:start] + " " + text[end:], text[start:end]))
        if len(out) >= n:
            break
    return out


def pretrain_vectors(features: Sequence[str], vectors: np.ndarray, sentences: Sequence[str], analyzer: str,
                     user_dict: str | None, job: FitJob, opts: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    """`wordvec.pretrain`: the dual encoder's own formula (SIF-weighted sum of feature vectors) trained to find a
    masked whole word from the rest of its sentence (InfoNCE over the batch's words, both sides one encoder),
    on the corpus, the learning queries and a query log: the vectors fine-tuning then starts from. Bounded by
    `pretrain_epochs` and a fifth of the stage's time left. Returns (vectors, report)."""
    import torch
    import torch.nn.functional as F

    t0 = time.monotonic()
    rng = random.Random(job.seed + 1)
    pairs = masked_pairs(sentences, int(opts["pretrain_pairs"]), rng, user_dict)
    index = {f: i for i, f in enumerate(features)}

    def rows(text: str) -> np.ndarray:
        return np.asarray([index[f] for f in text_features(text, analyzer, user_dict, int(opts["latin_grams"]))
                           if f in index], np.int64)

    encoded = [(c, w) for c, w in ((rows(c), rows(w)) for c, w in pairs) if len(c) and len(w)]
    if len(encoded) < 2 * int(opts["batch_size"]):
        return vectors, {"pairs": len(encoded), "note": "skipped: too few sentences with a word to mask"}
    torch.manual_seed(job.seed)
    emb = torch.nn.EmbeddingBag(len(features), vectors.shape[1], mode="sum", sparse=True)
    with torch.no_grad():
        emb.weight.copy_(torch.from_numpy(vectors))
    counts = np.bincount(np.concatenate([r for c, w in encoded for r in (c, w)]), minlength=len(features))
    weights = torch.from_numpy(sif_weights(counts + 1, SIF_A) / sif_weights(counts + 1, SIF_A).max())
    tau = float(opts["temperature"])

    def encode(batch_rows: list[np.ndarray]):
        lengths = torch.tensor([len(r) for r in batch_rows])
        flat = torch.from_numpy(np.concatenate(batch_rows))
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)[:-1]])
        return F.normalize(emb(flat, offsets, per_sample_weights=weights[flat]), dim=-1)

    def loss_of(net, batch):
        words = [w for _, w in batch]
        logits = encode([c for c, _ in batch]) @ encode(words).T / tau
        same = [(i, j) for i, a in enumerate(words) for j, b in enumerate(words) if i != j and np.array_equal(a, b)]
        if same:
            r, c = zip(*same)
            logits[list(r), list(c)] = -1e4
        return F.cross_entropy(logits, torch.arange(len(batch)))

    cut = min(512, len(encoded) // 5)
    held, learn = encoded[:cut], encoded[cut:]
    bs = int(opts["batch_size"])
    per_epoch = max(1, len(learn) // bs)

    def batches(epoch: int):
        order = list(range(len(learn)))
        random.Random(job.seed + epoch).shuffle(order)
        for start in range(0, per_epoch * bs, bs):
            yield [learn[i] for i in order[start:start + bs]]

    def held_loss() -> float:
        with torch.no_grad():
            return float(np.mean([float(loss_of(None, held[s:s + bs])) for s in range(0, len(held) - bs + 1, bs)]
                                 or [0.0]))

    net = torch.nn.ModuleDict({"emb": emb})
    end = time.monotonic() + 0.2 * max(job.seconds_left, 0.0)
    config = LoopConfig(lr=float(opts["lr"]), weight_decay=0.0, warmup_steps=0, eval_every=per_epoch, patience=10**6,
                        grad_clip=0.0, seed=job.seed, autocast=False)
    result = train(net, [Phase("pretrain", batches, per_epoch, int(opts["pretrain_epochs"]), early_stop=False)],
                   loss_of, DevEvaluator(held_loss, "masked_word_loss", greater_is_better=False), end, config,
                   "cpu", job.progress, description="wordvec: pre-training")
    return emb.weight.detach().numpy().astype(np.float32), {
        "pairs": len(encoded), "steps": result.steps, "held_out_loss": round(result.best, 4),
        "start_held_out_loss": round(result.baseline, 4), "seconds": round(time.monotonic() - t0, 1),
        "stopped_by_budget": result.stopped_by_budget}


def _ranking_run(model: WordVectors, view: CorpusView, searcher, queries: dict[str, str],
                 k: int = 100) -> dict[str, Ranking]:
    """Word-vector rankings of queries by exact inner product over the view (no FAISS: evaluation only)."""
    qids = list(queries)
    out: dict[str, Ranking] = {}
    for start in range(0, len(qids), 512):
        chunk = qids[start:start + 512]
        q = model.encode([queries[x] for x in chunk])
        sims = q @ view.vectors.T
        kk = min(k, sims.shape[1])
        top = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        for row, qid in enumerate(chunk):
            t = top[row][np.argsort(-sims[row, top[row]], kind="stable")]
            t = t[sims[row, t] > 0]
            out[qid] = Ranking(searcher.keys_to_ids(view.keys[t]), sims[row, t].astype(np.float32))
    return out


def _ndcg(runs: dict[str, Ranking], qrels) -> float:
    return ndcg10({q: r.pairs() for q, r in runs.items()}, qrels)


def _ndcg_alone(model, view, searcher, queries, qrels) -> float:
    return _ndcg(_ranking_run(model, view, searcher, queries), qrels)


def _fusion_weight(model, view, searcher, job: FitJob, held: list[str]) -> tuple[float, dict[str, float]]:
    """The weight of wordvec beside BM25 (1.0) with the best nDCG@10 on held-out train queries."""
    if not held:
        return 0.3, {}
    queries = {q: job.train.queries[q] for q in held}
    qrels = {q: job.train.qrels[q] for q in held}
    vec = _ranking_run(model, view, searcher, queries)
    bm = {q: searcher.bm25(t, 100) for q, t in queries.items()}
    scores = {}
    for w in WEIGHT_GRID:
        fused = {q: fuse([bm[q], vec[q]], "weighted", [1.0, w], 100, norm="minmax") for q in queries}
        scores[str(w)] = round(_ndcg(fused, qrels), 4)
    best = max(WEIGHT_GRID, key=lambda w: (scores[str(w)], -w))
    return float(best), scores


def _fine_tune(base: WordVectors, view: CorpusView, searcher, pairs, query_features, job: FitJob, opts, rng,
               eval_queries, base_score: float):
    """InfoNCE fine-tuning of vectors and weights; returns (best model, score, epoch, curve, stopped_by_budget)."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(job.seed)
    if job.device == "cpu":
        torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    device = torch.device(job.device)
    emb = torch.nn.EmbeddingBag(len(base.features), base.dim, mode="sum", sparse=True).to(device)
    with torch.no_grad():  # the starting vectors, scaled to the norm of N(0, 0.1) rows
        scale = float(np.linalg.norm(base.vectors, axis=1).mean()) or 1.0
        emb.weight.copy_(torch.from_numpy(base.vectors / scale * 0.1 * np.sqrt(base.dim)))
    raw_w = torch.nn.Embedding(len(base.features), 1, sparse=True).to(device)
    with torch.no_grad():  # softplus^-1 of SIF weights scaled to ~1 so the learned weights start as SIF
        w0 = torch.from_numpy(base.weights / max(float(base.weights.max()), 1e-9)).clamp(min=1e-4)
        raw_w.weight.copy_((w0 + torch.log(-torch.expm1(-w0)))[:, None])
    tau = float(opts["temperature"])
    keys_pos = {k: i for i, k in enumerate(view.keys.tolist())}
    id_rows = view.rows(np.arange(len(view.keys)))
    from souk.index.keys import doc_key

    def doc_row(doc_id: str) -> np.ndarray | None:
        i = keys_pos.get(doc_key(doc_id))
        return id_rows[i] if i is not None else None

    q_rows = {q: (r := base.ids(f))[r >= 0] for q, f in query_features.items()}
    pairs = [(q, d) for q, d in pairs if doc_row(d) is not None and len(q_rows[q])]
    positives: dict[str, set[str]] = {}
    for q, d in pairs:
        positives.setdefault(q, set()).add(d)
    negatives: dict[str, list[str]] = {}
    if opts["hard_negatives"]:
        for q in positives:
            found = searcher.bm25(job.train.queries[q], 60).ids[10:60]
            negatives[q] = [d for d in found if d not in positives[q] and doc_row(d) is not None]

    def encode(rows: list[np.ndarray]):
        lengths = torch.tensor([len(r) for r in rows])
        flat = torch.from_numpy(np.concatenate(rows).astype(np.int64)).to(device)
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)[:-1]]).to(device)
        w = F.softplus(raw_w(flat)[:, 0])
        return F.normalize(emb(flat, offsets, per_sample_weights=w), dim=-1)

    def export() -> WordVectors:
        return WordVectors(base.features, emb.weight.detach().cpu().numpy().astype(np.float32),
                           F.softplus(raw_w.weight.detach()[:, 0]).cpu().numpy().astype(np.float32), None,
                           base.analyzer, base.user_dict, dict(base.meta))

    net = torch.nn.ModuleDict({"emb": emb, "raw_w": raw_w})
    bs = int(opts["batch_size"])
    per_epoch = max(1, -(-len(pairs) // bs))

    def batches(epoch: int):
        rng.shuffle(pairs)
        for start in range(0, len(pairs), bs):
            yield pairs[start:start + bs]

    def loss_of(model, batch):
        docs = [doc_row(d) for _, d in batch]
        if negatives:
            docs += [doc_row(rng.choice(negatives[q])) if negatives.get(q) else id_rows[rng.randrange(len(id_rows))]
                     for q, _ in batch]
        qv = encode([q_rows[q] for q, _ in batch])
        dv = encode(docs)
        logits = qv @ dv.T / tau
        # a document that is a positive of another query in the batch is not its negative
        where: dict[str, list[int]] = {}
        for j, (_, d) in enumerate(batch):
            where.setdefault(d, []).append(j)
        same = [(i, j) for i, (q, d) in enumerate(batch) for p in positives[q] for j in where.get(p, ()) if j != i]
        if same:
            rows, cols = zip(*same)
            logits[list(rows), list(cols)] = -1e4
        return F.cross_entropy(logits, torch.arange(len(batch), device=device))

    def dev_score() -> float:
        model = export()
        return _ndcg_alone(model, view.reencode(model), searcher, *eval_queries)

    config = LoopConfig(lr=float(opts["lr"]), weight_decay=0.0, warmup_steps=0, eval_every=per_epoch,
                        patience=int(opts["patience"]), grad_clip=0.0, reserve_s=10.0, seed=job.seed, autocast=False)
    result = train(net, [Phase("judged", batches, per_epoch, int(opts["epochs"]))], loss_of,
                   DevEvaluator(dev_score, start=base_score), job.deadline, config, job.device, job.progress,
                   description="wordvec: fine-tuning")
    curve, best_epoch = epoch_curve(result.values, result.best_step, per_epoch)
    return (export() if best_epoch else base), result.best, best_epoch, curve[1:], result.stopped_by_budget
