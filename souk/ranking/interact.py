"""The `interact` stage: a small interaction model over query × document match matrices, trained from
judged queries (souk/training/interact.py: the torch module, its training and the model directory it writes),
for indexes without a pretrained encoder (Chinese titles).

For each candidate and each of three levels of the word-vector model's features (analyzer terms, Han
characters, character bigrams) the query × document exact-match matrix gives, per query feature, whether
and how often it occurs; a learned function of each query feature's IDF weighs them (`TermWeights`), and the
level's weighted coverage, log term frequency, plain coverage, the share of the document the query covers,
"covers everything" and BM25 over that level, plus lengths, go through a two-layer perceptron to a score.
Everything is computed from the `wordvec` model's corpus view (feature ids per document), never from stored
documents, so candidates from any retriever are scored alike; the model has no per-word parameters, so it
keeps working when the word-vector model is refitted. Misuse: fitting it on the split you report.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from souk.errors import ModelUnavailable
from souk.index.keys import doc_keys
from souk.models import store
from souk.models.store import read_model_manifest
from souk.models.word_vectors import WordVectors
from souk.query.plan import QueryPlan
from souk.plugins import NoOptions, parse_options
from souk.ranking.stage import STAGES, Stage, StageContext
from souk.retrieval.wordvec import CorpusView, active_model, corpus_view
from souk.types import Ranking

STAGE = "interact"
KIND = "interact"
FORMAT = 1
MAX_QUERY = (16, 24, 24)    # query features kept per level (terms, characters, bigrams)
MAX_DOC = (64, 96, 96)      # document features kept per level
K1, B = 1.2, 0.75
LEVEL_FEATURES = 8          # per level: weighted cover, weighted log tf, cover, full cover, and the 4 of DOC_FEATURES
# per level: doc share, log1p BM25, BM25 / the list's best, longest run of present query features
DOC_FEATURES = 4
GLOBAL_FEATURES = 4
MAX_MEMBERS = 16            # an ensemble's modules at most (`member_file`)


def member_file(k: int) -> str:
    """The weights file of an ensemble's member `k` (0: `weights.npz`, then `weights-1.npz`, ...): the one naming
    rule the fitter writes and `InteractModel` reads."""
    return "weights.npz" if k == 0 else f"weights-{k}.npz"


@dataclass
class CorpusStats:
    """Per-level document frequencies and mean lengths of a corpus view (what IDF and BM25 need)."""

    idf: np.ndarray          # (V,) float32, by feature id
    unseen_idf: float        # IDF of a query feature no document holds
    mean_len: np.ndarray     # (3,) mean document length per level
    lengths: np.ndarray      # (n, 3) document length per level
    levels: np.ndarray       # (V,) int8 level of each feature id

    @classmethod
    def of(cls, view: CorpusView, model: WordVectors) -> "CorpusStats":
        n = len(view.keys)
        doc_of = np.repeat(np.arange(n), np.diff(view.offsets))
        pairs = (
            np.unique(doc_of.astype(np.int64) * (len(model.features) + 1) + view.ids)
            if len(view.ids)
            else np.zeros(0, np.int64)
        )
        df = np.bincount(pairs % (len(model.features) + 1), minlength=len(model.features))[: len(model.features)]
        idf = np.log((n + 1) / (df + 0.5)).astype(np.float32)
        lengths = np.zeros((n, 3), np.float32)
        if len(view.ids):
            np.add.at(lengths, (doc_of, model.levels[view.ids]), 1.0)
        mean_len = np.maximum(lengths.mean(0), 1.0) if n else np.ones(3, np.float32)
        return cls(idf, float(np.log((n + 1) / 0.5)), mean_len, lengths, model.levels)


def _split_levels(ids: np.ndarray, levels: np.ndarray, caps: Sequence[int],
                  unknown_level: np.ndarray | None = None) -> list[np.ndarray]:
    """Feature ids of one text split by level (capped); unknown ids (-1) stay, at the level given."""
    lv = np.where(ids >= 0, levels[np.maximum(ids, 0)], unknown_level if unknown_level is not None else 0)
    return [ids[lv == level][: caps[level]] for level in range(3)]


@dataclass
class PairFeatures:
    """The fixed (not learned) part of the model for one query and its candidates.

    Per level: `present`/`log_tf` (K, Lq) and the query features' IDF (Lq,) with a mask; per candidate
    the level's document share, BM25, BM25 relative to the list's best and longest matched stretch
    (K, 3, DOC_FEATURES); and global length features (K, 4)."""

    present: list[np.ndarray]
    log_tf: list[np.ndarray]
    idf: list[np.ndarray]
    mask: list[np.ndarray]
    doc: np.ndarray          # (K, 3, DOC_FEATURES) per level
    glob: np.ndarray         # (K, 4)


def query_feature_ids(model: WordVectors, text: str) -> list[np.ndarray]:
    """The query's feature ids per level (unknown features kept as -1: they match nothing)."""
    feats = model.text_features(text)
    ids = model.ids(feats)
    from souk.models.word_vectors import feature_level

    unknown_level = np.fromiter((feature_level(f) for f in feats), dtype=np.int8, count=len(feats))
    return _split_levels(ids, model.levels, MAX_QUERY, unknown_level)


def pair_features(query: list[np.ndarray], rows: Sequence[np.ndarray], positions: np.ndarray, stats: CorpusStats,
                  query_chars: int) -> PairFeatures:
    """Match features of one query against candidate documents (`rows`: their feature ids)."""
    k = len(rows)
    present, log_tf, idfs, masks = [], [], [], []
    doc = np.zeros((k, 3, DOC_FEATURES), np.float32)
    for level in range(3):
        q = query[level]
        lq = len(q)
        docs = [r[stats.levels[r] == level][: MAX_DOC[level]] if len(r) else r for r in rows]
        ld = max((len(d) for d in docs), default=0)
        mat = np.full((k, max(ld, 1)), -2, np.int64)
        for i, d in enumerate(docs):
            mat[i, : len(d)] = d
        eq = (mat[:, None, :] == q[None, :, None]) & (q[None, :, None] >= 0)       # (K, Lq, Ld)
        tf = eq.sum(-1).astype(np.float32)                                             # (K, Lq)
        present.append((tf > 0).astype(np.float32))
        log_tf.append(np.log1p(tf))
        idf = np.where(q >= 0, stats.idf[np.maximum(q, 0)], stats.unseen_idf).astype(np.float32)
        idfs.append(idf)
        masks.append(np.ones(lq, np.float32))
        dlen = np.asarray([len(d) for d in docs], np.float32)
        matched = eq.any(1).sum(-1).astype(np.float32)
        doc[:, level, 0] = matched / np.maximum(dlen, 1)
        full_len = stats.lengths[positions, level] if len(positions) else dlen
        norm = K1 * (1 - B + B * full_len / stats.mean_len[level])
        bm25 = (idf[None, :] * tf * (K1 + 1) / (tf + norm[:, None])).sum(-1) if lq else np.zeros(k, np.float32)
        doc[:, level, 1] = np.log1p(np.maximum(bm25, 0))
        doc[:, level, 2] = bm25 / max(float(bm25.max()), 1e-6) if k else 0.0
        run = best = np.zeros(k, np.float32)
        for j in range(lq):  # longest stretch of consecutive query features the document holds (contiguity)
            run = (run + 1.0) * present[-1][:, j]
            best = np.maximum(best, run)
        doc[:, level, 3] = best / max(lq, 1)
    dchars = stats.lengths[positions, 1] if len(positions) else np.zeros(k, np.float32)
    glob = np.stack([np.full(k, np.log1p(query_chars)), np.log1p(dchars), np.log1p(np.abs(dchars - query_chars)),
                     np.log1p(stats.lengths[positions, 0] if len(positions) else np.zeros(k))], -1).astype(np.float32)
    return PairFeatures(present, log_tf, idfs, masks, doc, glob)


def stack_features(items: Sequence[PairFeatures], k: int) -> dict[str, np.ndarray]:
    """Pad a list of per-query features to arrays (Q, K, ...) for batched scoring or training."""
    out: dict[str, np.ndarray] = {}
    n = len(items)
    for level in range(3):
        lq = max(MAX_QUERY[level], 1)
        pres = np.zeros((n, k, lq), np.float32)
        ltf = np.zeros((n, k, lq), np.float32)
        idf = np.zeros((n, lq), np.float32)
        mask = np.zeros((n, lq), np.float32)
        for i, it in enumerate(items):
            kk, ll = it.present[level].shape
            pres[i, :kk, :ll] = it.present[level]
            ltf[i, :kk, :ll] = it.log_tf[level]
            idf[i, :ll] = it.idf[level]
            mask[i, :ll] = it.mask[level]
        out[f"present{level}"], out[f"log_tf{level}"], out[f"idf{level}"], out[f"mask{level}"] = pres, ltf, idf, mask
    doc = np.zeros((n, k, 3, DOC_FEATURES), np.float32)
    glob = np.zeros((n, k, GLOBAL_FEATURES), np.float32)
    valid = np.zeros((n, k), bool)
    for i, it in enumerate(items):
        kk = len(it.doc)
        doc[i, :kk], glob[i, :kk], valid[i, :kk] = it.doc, it.glob, True
    out["doc"], out["glob"], out["valid"] = doc, glob, valid
    return out


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


class InteractModel:
    """A fitted interaction model, scored in numpy (the same arithmetic as the forward of
    `souk.training.interact.build_module`; torch is only needed to train it). Weights live in `weights.npz`
    under the torch parameter names."""

    def __init__(self, folder: Path):
        manifest = read_model_manifest(folder, KIND, format=FORMAT)
        self.manifest = manifest
        count = manifest.get("members", 1)
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_MEMBERS:
            raise ModelUnavailable(f"model {folder.name}: its manifest's members must be 1..{MAX_MEMBERS}; "
                                   "fit it again")
        self.members = [self._read(folder, member_file(k)) for k in range(count)]
        self.weights = self.members[0]

    @staticmethod
    def _read(folder: Path, name: str) -> dict[str, np.ndarray]:
        """One member's weights, checked against this version's layout."""
        try:
            with np.load(folder / name) as data:
                weights = {k: data[k].astype(np.float32) for k in data.files}
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise ModelUnavailable(f"model {folder.name}: unreadable interact weights ({type(e).__name__}); "
                                   "fit it again") from None
        expected = {f"term_weights.{i}.{j}.{p}" for i in range(3) for j in (0, 2) for p in ("weight", "bias")} | \
                   {f"mlp.{j}.{p}" for j in (0, 2) for p in ("weight", "bias")}
        width = 3 * LEVEL_FEATURES + GLOBAL_FEATURES
        if set(weights) != expected or weights["mlp.0.weight"].shape[1] != width:
            raise ModelUnavailable(f"model {folder.name}: interact weights do not fit this version's features; "
                                   "fit it again")
        return weights

    def score(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """(queries, candidates) scores of stacked features (see `stack_features`): an ensemble's mean."""
        total = self._member_score(self.members[0], arrays)
        for w in self.members[1:]:
            total += self._member_score(w, arrays)
        return total / np.float32(len(self.members))

    @staticmethod
    def _member_score(w: dict[str, np.ndarray], arrays: dict[str, np.ndarray]) -> np.ndarray:
        feats = []
        for level in range(3):
            mask, idf = arrays[f"mask{level}"], arrays[f"idf{level}"]
            nq = mask.sum(1, keepdims=True)
            x = np.stack([idf, np.broadcast_to(np.log1p(nq), idf.shape)], -1)
            h = np.tanh(x @ w[f"term_weights.{level}.0.weight"].T + w[f"term_weights.{level}.0.bias"])
            tw = _softplus((h @ w[f"term_weights.{level}.2.weight"].T
                            + w[f"term_weights.{level}.2.bias"])[..., 0]) * mask
            a = (tw / np.maximum(tw.sum(1, keepdims=True), 1e-6))[:, None, :]
            pres, ltf = arrays[f"present{level}"], arrays[f"log_tf{level}"]
            cover = (a * pres).sum(-1)
            feats += [cover, (a * ltf).sum(-1), pres.sum(-1) / np.maximum(nq, 1), (cover > 0.999) * (nq > 0),
                      *np.moveaxis(arrays["doc"][..., level, :], -1, 0)]
        x = np.concatenate([np.stack(feats, -1).astype(np.float32), arrays["glob"]], -1)
        h = np.maximum(x @ w["mlp.0.weight"].T + w["mlp.0.bias"], 0.0)
        return (h @ w["mlp.2.weight"].T + w["mlp.2.bias"])[..., 0].astype(np.float32)


class InteractStage(Stage):
    """Scores the top candidates with the interaction model; documents the view lacks keep their order."""

    name = STAGE

    def __init__(self, context: StageContext, options: dict[str, Any]):
        parse_options(STAGE, options, NoOptions)
        searcher = context.searcher
        self.model = store.load(searcher.path, STAGE, InteractModel, unfitted="no fitted interact model: run "
                                "`souk fit --index DIR --train BEIR_DIR` (Chinese text) first")
        wv_dir, self.vectors, _ = active_model(searcher)
        self.view = corpus_view(searcher, wv_dir, self.vectors)
        self.stats = corpus_stats(self.view, self.vectors)

    def rerank(self, plan: QueryPlan, candidates: Ranking) -> Ranking:
        return self.rerank_many([plan], [candidates])[0]

    def rerank_many(self, plans: Sequence[QueryPlan], candidates: Sequence[Ranking]) -> list[Ranking]:
        arrays, positions = features_for(self.vectors, self.view, self.stats, [p.text for p in plans],
                                         [c.ids for c in candidates])
        scores = self.model.score(arrays) if len(plans) else np.zeros((0, 0), np.float32)
        out = []
        for i, cand in enumerate(candidates):
            s = scores[i, : len(cand)].astype(np.float32)
            missing = positions[i] < 0  # not in this commit's view: below every scored document, in order
            if missing.any():
                floor = float(s[~missing].min()) if (~missing).any() else 0.0
                s[missing] = floor - 1.0 - np.arange(int(missing.sum()), dtype=np.float32) * 1e-3
            out.append(Ranking(cand.ids, s, cand.signals))
        return out


_STATS: dict[int, tuple[CorpusView, CorpusStats]] = {}


def corpus_stats(view: CorpusView, model: WordVectors) -> CorpusStats:
    """IDF and lengths of a view, computed once per view object."""
    hit = _STATS.get(id(view))
    if hit is None or hit[0] is not view:
        _STATS.clear() if len(_STATS) > 8 else None
        _STATS[id(view)] = (view, CorpusStats.of(view, model))
    return _STATS[id(view)][1]


def features_for(model: WordVectors, view: CorpusView, stats: CorpusStats, texts: Sequence[str],
                 candidate_ids: Sequence[Sequence[str]]) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """Stacked features of queries and their candidates, and each candidate's row in the view (-1: absent)."""
    items, positions = [], []
    k = max((len(c) for c in candidate_ids), default=0)
    for text, ids in zip(texts, candidate_ids):
        pos = view.positions(doc_keys(list(ids))) if len(ids) else np.zeros(0, np.int64)
        rows = view.rows(np.maximum(pos, 0)) if len(pos) else []
        rows = [r if p >= 0 else r[:0] for r, p in zip(rows, pos)]
        items.append(pair_features(query_feature_ids(model, text), rows, np.maximum(pos, 0), stats,
                                   len(text.replace(" ", ""))))
        positions.append(pos)
    return stack_features(items, max(k, 1)), positions


STAGES.register(STAGE, InteractStage)
