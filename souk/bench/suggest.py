"""`souk bench suggest`: autocomplete latency on prefixes typed from real queries.

Completions are built from a catalog's titles (a BEIR directory's corpus, or an index's title and
entity fields) and a query log; the prefixes are every keystroke of held-out queries (a BEIR dataset's
train queries form the log, its dev/test queries are typed), sampled with a fixed seed. Each prefix
runs once, one at a time, as a server answers them. The peer is the code one writes without an index:
a linear scan over the same completion keys (exact prefixes only, so it does less work), run on a
subset of the same prefixes, interleaved prefix by prefix.
"""
from __future__ import annotations

import heapq
import json
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from souk.errors import DatasetError
from souk.query.querylog import read_query_log
from souk.query.suggest import Suggester, prefix_key

WARM_UP = 20


def bench_suggest(dataset: Path | None = None, index: Path | None = None, log: Path | None = None,
                  queries: Path | None = None, prefixes: int = 2000, k: int = 10, peer_prefixes: int = 200,
                  seed: int = 0) -> dict[str, Any]:
    """Build a Suggester over `dataset` (BEIR dir) or `index`, then time `prefixes` typed prefixes."""
    if (dataset is None) == (index is None):
        raise DatasetError("give exactly one of --dataset (a BEIR directory) or --index")
    if dataset is not None:
        titles, log_counts, typed = _beir_parts(Path(dataset))
        if log is not None:
            log_counts = read_query_log(log)
        if queries is not None:
            typed = list(read_query_log(queries))
        t0 = time.perf_counter()
        suggester = Suggester.from_texts(([t] for t in titles), log=log_counts)
        source = str(dataset)
    else:
        from souk.index import Index

        assert index is not None  # exactly one of the two, checked above
        if queries is None:
            raise DatasetError("--index needs --queries FILE (a query log whose queries are typed as prefixes)")
        typed = list(read_query_log(queries))
        t0 = time.perf_counter()
        suggester = Suggester.build(Index.open(index).searcher(), log=log, cache=False)
        source = str(index)
    build_s = time.perf_counter() - t0
    sample = _keystrokes(typed, prefixes, seed)
    if not sample:
        raise DatasetError("no queries to type prefixes from")
    for p in sample[:WARM_UP]:  # first calls pay for imports and lazy tables
        suggester.suggest(p, k)
    keys = suggester.tables["text"].keys
    weights = suggester.tables["text"].weights
    times, peer_times, empty, typo = [], [], 0, 0
    for n, p in enumerate(sample):
        t = time.perf_counter()
        out = suggester.suggest(p, k)
        times.append(time.perf_counter() - t)
        empty += not out
        typo += any(s.match == "typo" for s in out)
        if n < peer_prefixes:
            t = time.perf_counter()
            _scan(keys, weights, prefix_key(p), k)
            peer_times.append(time.perf_counter() - t)
    ms = np.asarray(times) * 1e3
    peer_ms = np.asarray(peer_times) * 1e3
    return {
        "source": source, "titles": suggester.info.get("titles"), "completions": suggester.info["completions"],
        "prefixes": len(sample), "k": k, "build_s": round(build_s, 2),
        "p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "mean_ms": round(float(ms.mean()), 3), "empty_share": round(empty / len(sample), 3),
        "typo_share": round(typo / len(sample), 3),
        "peer": "linear scan, exact prefixes only", "peer_p50_ms": round(float(np.percentile(peer_ms, 50)), 3),
        "speedup_p50": round(float(np.percentile(peer_ms, 50))
                             / max(float(np.percentile(ms[: len(peer_ms)], 50)), 1e-9), 1),
    }


def _beir_parts(path: Path) -> tuple[list[str], Counter[str], list[str]]:
    """Titles of the corpus; train queries as the log; dev/test queries (else every other query) to type."""
    corpus, queries_file = path / "corpus.jsonl", path / "queries.jsonl"
    if not corpus.is_file() or not queries_file.is_file():
        raise DatasetError(f"{path} is not a BEIR directory (corpus.jsonl and queries.jsonl)")
    titles = []
    with corpus.open(encoding="utf-8") as fh:
        for line in fh:
            doc = json.loads(line)
            title = (doc.get("title") or "").strip() or (doc.get("text") or "")[:200]
            if title.strip():
                titles.append(title)
    texts: dict[str, str] = {}
    with queries_file.open(encoding="utf-8") as fh:
        for line in fh:
            q = json.loads(line)
            texts[str(q["_id"])] = q["text"]
    train = _split_ids(path, ("train",))
    held = _split_ids(path, ("dev", "test"))
    if train and held:
        log = Counter(texts[q] for q in train if q in texts)
        typed = [texts[q] for q in held if q in texts]
    else:
        ordered = list(texts.values())
        log, typed = Counter(ordered[::2]), ordered[1::2]
    return titles, log, typed


def _split_ids(path: Path, names: tuple[str, ...]) -> list[str]:
    for name in names:
        f = path / "qrels" / f"{name}.tsv"
        if f.is_file():
            with f.open(encoding="utf-8") as fh:
                next(fh, None)
                return list(dict.fromkeys(line.split("\t", 1)[0] for line in fh if line.strip()))
    return []


def _keystrokes(queries: list[str], n: int, seed: int) -> list[str]:
    """`n` prefixes sampled from every keystroke of the queries (what a user types, one char at a time)."""
    rng = random.Random(seed)
    pool = [q[:i] for q in dict.fromkeys(" ".join(q.split()) for q in queries) for i in range(1, len(q) + 1)]
    return rng.sample(pool, min(n, len(pool)))


def _scan(keys: list[str], weights: np.ndarray, prefix: str, k: int) -> list[int]:
    hits = [i for i, key in enumerate(keys) if key.startswith(prefix)]
    return heapq.nlargest(k, hits, key=lambda i: weights[i])
