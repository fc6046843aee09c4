"""Synonym mining: which word pairs might be synonyms, for a person to review?

Words that are used in the same contexts but rarely together are candidate synonyms (巧克力 and 朱古力
both precede 饼干 and follow brand names, yet a title names only one of them). Signals:

- `cosine`: word2vec (gensim, skip-gram, fixed seed) similarity over titles and logged queries;
- `context`: cosine of the two words' PPMI context vectors (window co-occurrence counts), a count-based
  check that does not depend on training noise;
- `together`: the share of texts holding the rarer word that also hold the other; synonyms seldom
  appear side by side, related words (牛奶 and 饮品) often do;
- `gap`: how differently shoppers and the catalog use the two words (share of each word's texts that
  are queries): synonyms worth adding bridge a vocabulary gap (shoppers type `fridge`, titles say
  `refrigerator`), while co-hyponyms (chrome/nickel) appear alike in both;
- `spelling`: similarity of the spellings when they are variants of one word (bi-fold/bifold,
  gray/grey; Indel similarity >= 0.7, else 0).

`score = cosine * sqrt(context) * (1 - together) * confidence * (0.25 + 0.75 * max(gap, spelling))`
with `confidence = 1 - 1/sqrt(count of the rarer word)`. Distributional similarity alone mostly finds
co-hyponyms (product lines, colours, brands); the last two factors lift the pairs a synonym file
wants. Pairs of one word and its inflection or its own compound (faucet/faucets, 番茄/番茄酱) and words
with digits are left out. Nothing mined is applied: a person adds the pairs they accept to a synonym
file. Misuse: adding mined pairs unreviewed; antonyms and co-hyponyms (red/blue, 苹果/香蕉) still
come up.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Iterable

import numpy as np

from souk.analysis.filters import english_stopwords, stem
from souk.analysis.normalize import HAN, normalize
from souk.errors import DatasetError
from souk.query.words import words


@dataclass(frozen=True)
class MiningConfig:
    """word2vec and candidate settings; defaults train in seconds on 50k short texts."""

    vector_size: int = 64
    window: int = 3
    min_count: int = 5
    epochs: int | None = None  # None: enough passes for about 2M words of training, 5 to 50
    workers: int = 1  # 1 keeps training deterministic for a given seed
    seed: int = 0
    top_words: int = 5000  # candidates for the most frequent words only
    neighbours: int = 10
    min_cosine: float = 0.5


@dataclass(frozen=True)
class CandidatePair:
    a: str
    b: str
    score: float
    cosine: float
    context: float
    together: float
    gap: float
    spelling: float
    count_a: int
    count_b: int


@dataclass
class MiningResult:
    pairs: list[CandidatePair]
    texts: int
    vocab: int
    train_s: float
    known_found: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"pairs": [asdict(p) for p in self.pairs], "texts": self.texts, "vocab": self.vocab,
                "train_s": self.train_s, "known_found": [list(p) for p in self.known_found]}


def sentences(texts: Iterable[str]) -> list[list[str]]:
    """Word lists of texts (normalized; stopwords, punctuation and bare numbers dropped)."""
    stop = english_stopwords()
    out = []
    for text in texts:
        ws = [w for w in words(" ".join(normalize(text).split())) if w not in stop and not w.isdigit()
              and not (len(w) == 1 and not HAN.match(w))]
        if len(ws) >= 2:
            out.append(ws)
    return out


def mine_pairs(titles: Iterable[str], queries: Iterable[str] = (), top: int = 50,
               config: MiningConfig | None = None, known: set[frozenset[str]] | None = None) -> MiningResult:
    """Candidate synonym pairs from catalog `titles` and logged `queries` (each distinct query once),
    best first; pairs in `known` (e.g. `Synonyms.pairs()`) are left out and listed as found."""
    cfg = config or MiningConfig()
    title_sents, query_sents = sentences(titles), sentences(queries)
    sents = title_sents + query_sents
    if not sents:
        raise DatasetError("no texts with two or more words to mine synonyms from")
    t0 = time.perf_counter()
    from gensim.models import Word2Vec

    words_seen = sum(map(len, sents))
    epochs = cfg.epochs or int(min(50, max(5, round(2_000_000 / max(words_seen, 1)))))
    model = Word2Vec(sents, vector_size=cfg.vector_size, window=cfg.window, min_count=cfg.min_count, sg=1,
                     negative=5, epochs=epochs, workers=cfg.workers, seed=cfg.seed)
    train_s = time.perf_counter() - t0
    vocab = list(model.wv.index_to_key)  # most frequent first
    if len(vocab) < 2:
        raise DatasetError(f"only {len(vocab)} word(s) occur {cfg.min_count}+ times; lower min_count or give more text")
    vectors = model.wv.get_normed_vectors()
    counts = np.asarray([model.wv.get_vecattr(w, "count") for w in vocab], dtype=np.int64)
    candidates = _neighbours(vectors, min(cfg.top_words, len(vocab)), cfg.neighbours, cfg.min_cosine)
    candidates = {(i, j): c for (i, j), c in candidates.items() if _distinct_words(vocab[i], vocab[j])}
    index = {w: i for i, w in enumerate(vocab)}
    context = _context_cosines(sents, index, cfg.window, candidates)
    together = _together(sents, index, candidates, counts)
    query_share = _query_share(title_sents, query_sents) if query_sents else {}
    known = known or set()
    pairs, found_known = [], []
    for (i, j), cos in candidates.items():
        a, b = vocab[i], vocab[j]
        if frozenset((a, b)) in known:
            found_known.append((a, b))
            continue
        ctx, tog = context[(i, j)], together[(i, j)]
        gap = abs(query_share.get(a, 0.0) - query_share.get(b, 0.0)) if query_share else 0.0
        spelling = _spelling(a, b)
        confidence = 1.0 - 1.0 / np.sqrt(min(counts[i], counts[j]))
        score = cos * np.sqrt(max(ctx, 0.0)) * (1.0 - tog) * confidence * (0.25 + 0.75 * max(gap, spelling))
        pairs.append(CandidatePair(a, b, round(float(score), 4), round(cos, 4), round(ctx, 4), round(tog, 4),
                                   round(gap, 4), round(spelling, 4), int(counts[i]), int(counts[j])))
    pairs.sort(key=lambda p: (-p.score, p.a, p.b))
    return MiningResult(pairs[:top], len(sents), len(vocab), round(train_s, 2), sorted(found_known))


def _query_share(title_sents: list[list[str]], query_sents: list[list[str]]) -> dict[str, float]:
    """Per word: its rate in queries over the sum of its rates in queries and titles (add-one smoothed)."""
    tc = Counter(w for s in title_sents for w in set(s))
    qc = Counter(w for s in query_sents for w in set(s))
    t, q = max(len(title_sents), 1), max(len(query_sents), 1)
    out = {}
    for w in tc.keys() | qc.keys():
        a, b = (qc[w] + 1) / q, (tc[w] + 1) / t
        out[w] = a / (a + b)
    return out


def _spelling(a: str, b: str) -> float:
    """Indel similarity of two spellings when >= 0.7 (variants of one word), else 0."""
    from rapidfuzz.distance import Indel

    sim = Indel.normalized_similarity(a, b)
    return sim if sim >= 0.7 else 0.0


def _neighbours(vectors: np.ndarray, rows: int, k: int, min_cosine: float) -> dict[tuple[int, int], float]:
    """(i, j) with i < j -> cosine, for each of the first `rows` words' k nearest words."""
    out: dict[tuple[int, int], float] = {}
    k = min(k, len(vectors) - 1)
    for start in range(0, rows, 512):
        sims = vectors[start : start + 512] @ vectors.T
        for r in range(sims.shape[0]):
            sims[r, start + r] = -1.0
        best = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        for r, cols in enumerate(best):
            i = start + r
            for j in cols.tolist():
                c = float(sims[r, j])
                if c >= min_cosine:
                    out[(min(i, j), max(i, j))] = c
    return out


def _distinct_words(a: str, b: str) -> bool:
    """False for one word and its inflection or its compound (faucet/faucets, 番茄/番茄酱), and for
    words with digits."""
    if a in b or b in a or any(c.isdigit() for c in a + b):
        return False  # sizes and model numbers (5kg/8kg) are never synonyms
    return stem(a) != stem(b)


def _context_cosines(sents: list[list[str]], index: dict[str, int], window: int,
                     pairs: dict[tuple[int, int], float]) -> dict[tuple[int, int], float]:
    """PPMI context-vector cosine of each pair (contexts: words within `window` positions)."""
    from scipy import sparse

    rows, cols = [], []
    for s in sents:
        ids = [index.get(w, -1) for w in s]
        for p, i in enumerate(ids):
            if i < 0:
                continue
            for q in range(max(0, p - window), min(len(ids), p + window + 1)):
                if q != p and ids[q] >= 0:
                    rows.append(i)
                    cols.append(ids[q])
    n = len(index)
    if not rows:
        return {pair: 0.0 for pair in pairs}
    m = sparse.coo_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n, n)).tocsr()
    total = m.sum()
    row_sum = np.asarray(m.sum(axis=1)).ravel()
    col_sum = np.asarray(m.sum(axis=0)).ravel() ** 0.75  # context distribution smoothing
    col_sum = col_sum / col_sum.sum() * total
    m = m.tocoo()
    pmi = np.log(m.data * total / (row_sum[m.row] * col_sum[m.col]))
    keep = pmi > 0
    ppmi = sparse.csr_matrix((pmi[keep], (m.row[keep], m.col[keep])), shape=(n, n))
    norms = np.sqrt(np.asarray(ppmi.multiply(ppmi).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    unit = sparse.diags(1.0 / norms) @ ppmi
    keys = list(pairs)
    if not keys:
        return {}
    left = unit[[i for i, _ in keys]]
    right = unit[[j for _, j in keys]]
    dots = np.asarray(left.multiply(right).sum(axis=1)).ravel()
    return {key: float(d) for key, d in zip(keys, dots)}


def _together(sents: list[list[str]], index: dict[str, int], pairs: dict[tuple[int, int], float],
              counts: np.ndarray) -> dict[tuple[int, int], float]:
    """Share of the texts holding the rarer word of each pair that also hold the other word."""
    wanted = {i for pair in pairs for i in pair}
    texts_of: dict[int, set[int]] = {i: set() for i in wanted}
    for t, s in enumerate(sents):
        for w in set(s):
            i = index.get(w)
            if i in texts_of:
                texts_of[i].add(t)
    out = {}
    for (i, j) in pairs:
        a, b = texts_of[i], texts_of[j]
        rarer = min(len(a), len(b))
        out[(i, j)] = len(a & b) / rarer if rarer else 0.0
    return out

