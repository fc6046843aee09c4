"""Fitter `words`: new words for Chinese segmentation, mined from the index's own text and queries.

The notes' trick ("把query中长度小于4的拿出来，加入词表构建新词"): people type product names and brands jieba
does not know (`手机壳` comes out as `手机 | 壳`), so the index never holds them as one term. Two sources:
- short queries (train queries, the index's logged searches, a `query_log` file): Han strings of 2 to
  `max_query_chars` characters seen `min_query_count` times, or seen once and found in at least
  `min_query_docs` documents;
- catalog n-grams: Han character 2- to `max_ngram`-grams of the documents found in at least `min_docs`
  documents, cohesive (each split's pointwise mutual information at least `min_pmi`) and free at both ends
  (the entropy of the characters before and after at least `min_entropy` nats), a shorter n-gram dropped
  when nearly all its occurrences are inside a longer kept one.
A candidate is kept only when jieba's dictionary lacks it and jieba (precise mode) splits it. At most
`max_words`, the most frequent first. The stage publishes the list (`words.txt`, a model directory like any
other); activating it (`on_activate`, also `souk models --activate words-N`) adds the words to the index's
own word list and analyzes every document again in one commit (`souk.index.words.reanalyze`), so the later
stages of the same `souk fit` (wordvec, interact, ltr) learn on the new terms. Option `new_words` (off by
default until measured) turns the stage on. Misuse: mining from dev or test queries.
"""
from __future__ import annotations

import math
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

from souk.analysis.normalize import HAN_CLASS, normalize
from souk.training.fit import FitJob, register_fitter
from souk.training.wordvec import reads_han

_HAN_RUN = re.compile(f"[{HAN_CLASS}]+")
_HAN_ONLY = re.compile(f"[{HAN_CLASS}]+")
EDGE_STOP = frozenset("的了是在和与及或就也都而被把从对")  # a word rarely starts or ends with these particles
WORDS_FILE = "words.txt"
COUNT_RANGE = (300, 20_000)
DEFAULTS: dict[str, Any] = {
    "new_words": False,       # mine and add new words (off until it wins on held-out train queries)
    "max_query_chars": 4,
    "min_query_count": 2,
    "min_query_docs": 2,
    "max_ngram": 4,
    "min_docs": 5,
    "min_pmi": 3.0,
    "min_entropy": 1.0,
    "max_words": 3000,
    "max_docs": 200_000,      # documents read (a seeded sample beyond)
    "query_log": None,        # a query log file (souk.query.querylog formats) read with the train queries
}


def han_runs(texts: Iterable[str]) -> list[str]:
    """The Han runs of the normalized texts."""
    return [run for t in texts for run in _HAN_RUN.findall(normalize(t))]


class NgramStats:
    """Document frequencies of Han n-grams (1..n+1 characters) and their neighbouring characters."""

    def __init__(self, runs_by_doc: list[list[str]], n: int):
        self.n = n
        self.df: Counter[str] = Counter()
        self.left: dict[str, Counter[str]] = {}
        self.right: dict[str, Counter[str]] = {}
        for runs in runs_by_doc:
            seen: set[str] = set()
            for run in runs:
                for size in range(1, n + 1):
                    for i in range(len(run) - size + 1):
                        gram = run[i:i + size]
                        seen.add(gram)
                        if size >= 2:
                            self.left.setdefault(gram, Counter())[run[i - 1] if i else "^"] += 1
                            self.right.setdefault(gram, Counter())[run[i + size] if i + size < len(run) else "$"] += 1
            self.df.update(seen)
        self.docs = max(len(runs_by_doc), 1)

    def pmi(self, gram: str) -> float:
        """The smallest pointwise mutual information over the ways to cut `gram` in two (document frequencies)."""
        p = self.df[gram] / self.docs
        return min(math.log(p / ((self.df[gram[:i]] / self.docs) * (self.df[gram[i:]] / self.docs)))
                   for i in range(1, len(gram)))

    def entropy(self, gram: str) -> float:
        """The smaller of the entropies of the characters before and after `gram` (start and end count as one)."""
        def h(counts: Counter[str]) -> float:
            total = sum(counts.values())
            return -sum(c / total * math.log(c / total) for c in counts.values()) if total else 0.0

        return min(h(self.left.get(gram, Counter())), h(self.right.get(gram, Counter())))


def jieba_splits(word: str, user_dict: str | None = None) -> bool:
    """True when jieba's dictionary lacks `word` and its precise mode cuts it into several words."""
    from souk.analysis.tokenize import han_segments, in_dictionary

    return not in_dictionary(word, user_dict) and len(list(han_segments(word, user_dict))) > 1


def count_for(word: str, seen: int, user_dict: str | None = None) -> int:
    """The dictionary count a new word gets: 100 per document or query it was seen in (within
    `COUNT_RANGE`; a few hundred is a rare dictionary word, so it usually wins over its pieces in context, where
    jieba's own suggestion only makes it win alone), never below jieba's suggestion."""
    from souk.analysis.tokenize import suggested_count

    lo, hi = COUNT_RANGE
    return max(suggested_count(word, user_dict), min(hi, max(lo, 100 * seen)))


def mine(doc_texts: Iterable[str], queries: Iterable[str], opts: dict[str, Any],
         user_dict: str | None = None) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """(new words with their dictionary counts, most frequent first; a report of how many each source gave)."""
    n = int(opts["max_ngram"])
    stats = NgramStats([_HAN_RUN.findall(normalize(t)) for t in doc_texts], max(n, int(opts["max_query_chars"])))
    counts: Counter[str] = Counter()
    for q in queries:
        q = "".join(normalize(q).split())
        if 2 <= len(q) <= int(opts["max_query_chars"]) and _HAN_ONLY.fullmatch(q):
            counts[q] += 1
    from_queries = {q: stats.df[q] + c for q, c in counts.items()
                    if (c >= int(opts["min_query_count"]) or stats.df[q] >= int(opts["min_query_docs"]))
                    and jieba_splits(q, user_dict)}
    grams = {}
    for gram, df in stats.df.items():
        if (not 2 <= len(gram) <= n or df < int(opts["min_docs"]) or gram in from_queries
                or gram[0] in EDGE_STOP or gram[-1] in EDGE_STOP):
            continue
        if stats.pmi(gram) >= float(opts["min_pmi"]) and stats.entropy(gram) >= float(opts["min_entropy"]):
            grams[gram] = df
    # a shorter n-gram nearly always inside a longer kept one is part of that word, not a word of its own
    for gram in sorted(grams, key=len, reverse=True):
        for size in range(2, len(gram)):
            for i in range(len(gram) - size + 1):
                sub = gram[i:i + size]
                if sub in grams and grams[sub] <= 1.2 * grams[gram]:
                    del grams[sub]
    grams = {g: df for g, df in grams.items() if jieba_splits(g, user_dict)}
    ranked = sorted({**grams, **from_queries}.items(), key=lambda kv: (-kv[1], kv[0]))
    words = [(w, count_for(w, seen, user_dict)) for w, seen in ranked[:int(opts["max_words"])]]
    return words, {"from_queries": len(from_queries), "from_catalog": len(grams), "kept": len(words),
                   "short_queries": len(counts)}


def activate_words(index_path: Path, model_dir: Path) -> dict[str, Any]:
    """Add a fitted word list to the index's own and analyze every document again (one commit)."""
    from souk.analysis.user_words import read_words
    from souk.index.words import reanalyze
    from souk.analysis.user_words import format_words
    from souk.index import Index

    new = read_words(model_dir / WORDS_FILE)
    current = Index.open(index_path).schema.analysis.get("user_dict")
    kept = read_words(current) if current else []
    known = {w for w, _, _ in kept}
    merged = kept + [w for w in new if w[0] not in known]
    done = reanalyze(index_path, format_words(merged), len(merged), mined=len(new))
    return {**done, "added": len(merged) - len(kept)}


@register_fitter("words", applies=reads_han, share=0.05, order=5, on_activate=activate_words,
                 options=DEFAULTS)
def fit_words(job: FitJob) -> dict[str, Any]:
    """Mine new words into `job.workdir/words.txt`; the manifest says how many and from where."""
    from souk.index import Index
    from souk.analysis.user_words import format_words
    from souk.training.data import DocTexts
    from souk.training.mlm import logged_queries

    opts = {**DEFAULTS, **job.options}
    t0 = time.monotonic()
    if not opts["new_words"]:
        return {"skipped": "option words.new_words is off: the index's words stay as they are"}
    index = Index.open(job.index_path)
    searcher = index.searcher()
    user_dict = index.schema.analysis.get("user_dict")
    ids = searcher.ids()
    if len(ids) > int(opts["max_docs"]):
        import numpy as np

        picked = np.random.default_rng(job.seed).choice(len(ids), size=int(opts["max_docs"]), replace=False)
        ids = [ids[int(i)] for i in sorted(picked)]
    docs = [" ".join(p for p in d if p) for d in DocTexts(searcher).get(ids)]
    queries = list(job.train.queries.values()) + logged_queries(job.index_path, 1_000_000)
    if opts["query_log"]:
        from souk.query.querylog import read_query_log

        queries += [q for q, c in read_query_log(opts["query_log"]).items() for _ in range(min(c, 1000))]
    words, report = mine(docs, queries, opts, user_dict)
    (job.workdir / WORDS_FILE).write_text(format_words([(w, c, None) for w, c in words]), encoding="utf-8")
    return {"kind": "words", "words": len(words), "sample": [w for w, _ in words[:30]], "sources": report,
            "params": {k: v for k, v in opts.items() if k != "query_log"},
            "query_log": str(opts["query_log"]) if opts["query_log"] else None,
            "activate": bool(words), "fit_seconds": round(time.monotonic() - t0, 1)}
