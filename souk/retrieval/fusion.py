"""Fusion: one ranking from several (BM25 + dense), by rank or by normalized score.

`rrf`: score(d) = sum_i w_i / (rrf_k + rank_i(d)), ranks from 1; a list that misses d adds nothing.
`weighted`: score(d) = sum_i w_i * norm_i(d), scores normalized per list (`minmax` to [0, 1] or `zscore`);
a list that misses d contributes its lowest normalized score (as bad as the worst it retrieved).
Ties break by the best rank d reached in any list. Pure numpy over `Ranking`s; methods and norms are
registries keyed by name (the names are what configs hold).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from souk.errors import ConfigError
from souk.types import Ranking


def _minmax(s: np.ndarray) -> tuple[np.ndarray, float]:
    span = float(s.max() - s.min()) if len(s) else 0.0
    return ((s - s.min()) / span if span > 0 else np.ones_like(s)), 0.0


def _zscore(s: np.ndarray) -> tuple[np.ndarray, float]:
    sd = float(s.std()) if len(s) else 0.0
    z = (s - s.mean()) / sd if sd > 0 else np.zeros_like(s)
    return z, float(z.min()) if len(z) else 0.0


# name -> (normalized scores, floor for documents a list missed)
NORMS: dict[str, Callable[[np.ndarray], tuple[np.ndarray, float]]] = {"minmax": _minmax, "zscore": _zscore}


def _union(rankings: Sequence[Ranking]) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Distinct ids, each list's positions into them, and each id's best rank (0-based)."""
    all_ids = np.asarray([i for r in rankings for i in r.ids], dtype=object)
    uniq, inverse = (
        np.unique(all_ids, return_inverse=True) if len(all_ids) else (np.zeros(0, object), np.zeros(0, np.int64))
    )
    bounds = np.cumsum([0, *map(len, rankings)])
    where = [inverse[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    best = np.full(len(uniq), np.iinfo(np.int64).max)
    for w in where:
        np.minimum.at(best, w, np.arange(len(w)))
    return uniq, where, best


def _ranked(ids: np.ndarray, scores: np.ndarray, best: np.ndarray, k: int | None) -> Ranking:
    order = np.lexsort((best, -scores))[:k]
    return Ranking(ids[order].tolist(), scores[order].astype(np.float32))


def _with_signals(fused: Ranking, rankings: Sequence[Ranking], names: Sequence[str]) -> Ranking:
    """`fused` carrying each input list's raw scores as a signal under its name (NaN where it missed)."""
    pos = {doc_id: i for i, doc_id in enumerate(fused.ids)}
    signals = dict(fused.signals)
    for name, r in zip(names, rankings):
        values = np.full(len(fused.ids), np.nan, dtype=np.float32)
        for doc_id, score in zip(r.ids, np.asarray(r.scores, dtype=np.float32)):
            i = pos.get(doc_id)
            if i is not None:
                values[i] = score
        signals[name] = values
    return Ranking(fused.ids, fused.scores, signals)


def rrf(rankings: Sequence[Ranking], weights: Sequence[float], k: int | None = None, rrf_k: float = 60.0) -> Ranking:
    """Reciprocal rank fusion, weighted per list."""
    ids, where, best = _union(rankings)
    scores = np.zeros(len(ids))
    for w, pos in zip(weights, where):
        np.add.at(scores, pos, w / (rrf_k + 1.0 + np.arange(len(pos))))
    return _ranked(ids, scores, best, k)


def weighted(rankings: Sequence[Ranking], weights: Sequence[float], k: int | None = None,
             norm: str = "zscore") -> Ranking:
    """Weighted sum of per-list normalized scores (`norm`: a key of `NORMS`)."""
    if norm not in NORMS:
        raise ConfigError(f"norm: unknown {norm!r}; known: {', '.join(NORMS)}")
    ids, where, best = _union(rankings)
    scores = np.zeros(len(ids))
    for w, pos, r in zip(weights, where, rankings):
        normed, floor = NORMS[norm](np.asarray(r.scores, dtype=np.float64))
        scores += w * floor
        np.add.at(scores, pos, w * (normed - floor))
    return _ranked(ids, scores, best, k)


FUSIONS: dict[str, Callable[..., Ranking]] = {"rrf": rrf, "weighted": weighted}


def fuse(rankings: Sequence[Ranking], method: str = "rrf", weights: Sequence[float] | None = None,
         k: int | None = None, names: Sequence[str] | None = None, **options) -> Ranking:
    """Fuse `rankings` with `method` (a key of `FUSIONS`); `options` go to it (`rrf_k`, `norm`).
    With `names`, the result carries each list's raw scores as a signal of that name."""
    if method not in FUSIONS:
        raise ConfigError(f"fusion: unknown {method!r}; known: {', '.join(FUSIONS)}")
    weights = [1.0] * len(rankings) if weights is None else list(weights)
    if len(weights) != len(rankings):
        raise ValueError(f"{len(weights)} weights for {len(rankings)} rankings; give one weight per ranking")
    fused = FUSIONS[method](rankings, weights, k, **options)
    return _with_signals(fused, rankings, names) if names else fused


# ---- stacking: a learned fusion over the lists' scores and ranks (`souk.ranking.stacking`) ------------------
STACK_PER_LIST = ("score", "norm", "rank", "found")


def stack_columns(names: Sequence[str]) -> list[str]:
    """The columns `stack_features` gives, in order: per list its raw score, min-max score, rank and whether
    it found the document, then the fixed fusion's score and rank and how many lists found the document."""
    return [f"{n}.{f}" for n in names for f in STACK_PER_LIST] + ["fixed.score", "fixed.rank", "lists"]


def stack_features(fused: Ranking, rankings: Sequence[Ranking]) -> np.ndarray:
    """(len(fused), columns) features of each fused document (see `stack_columns`; NaN score where a list
    missed it, its rank then the list's length): what a stacking model reads."""
    n, width = len(fused.ids), len(STACK_PER_LIST)
    x = np.zeros((n, width * len(rankings) + 3), dtype=np.float32)
    pos = {doc_id: i for i, doc_id in enumerate(fused.ids)}
    found = np.zeros(n, dtype=np.float32)
    for j, r in enumerate(rankings):
        scores = np.asarray(r.scores, dtype=np.float32)
        normed, _ = _minmax(scores.astype(np.float64))
        col = x[:, j * width:(j + 1) * width]
        col[:, 0] = np.nan
        col[:, 1] = 0.0
        col[:, 2] = len(r.ids)
        for rank, doc_id in enumerate(r.ids):
            i = pos.get(doc_id)
            if i is not None:
                col[i, 0], col[i, 1], col[i, 2], col[i, 3] = scores[rank], normed[rank], rank, 1.0
        found += col[:, 3]
    x[:, -3] = np.asarray(fused.scores, dtype=np.float32)
    x[:, -2] = np.arange(n, dtype=np.float32)
    x[:, -1] = found
    return x


def restack(fused: Ranking, scores: np.ndarray) -> Ranking:
    """`fused` reordered by a stacking model's `scores` (ties keep the fixed fusion's order), signals kept."""
    order = np.lexsort((np.arange(len(fused.ids)), -np.asarray(scores, dtype=np.float64)))
    return fused.take(order, np.asarray(scores, dtype=np.float32)[order])
