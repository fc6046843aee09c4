"""`souk bench keyword`: souk's BM25 index against bm25s on the same tokens and the same k1/b.

Both sides see identical analyzed terms (souk's analyzer); both are timed from raw text, so the
analysis cost counts on both sides. souk answers from its impacts (`Searcher.prepare_bm25`: postings scored
once per commit, as bm25s scores them at index time); building them counts in souk's index time. Queries run
one at a time on one thread, as a server answers them, interleaved query by query between the two sides so that
machine noise falls on both alike. `cpu_ratio` is the same ratio in this thread's CPU seconds (the clock read
around each query on both sides): on a shared machine it moves less with the load than wall-clock time.
`ratio_median` and `cpu_ratio_median` take each query's median over the repeats on each side before summing: a
query stretched by another process's time slice (a few ms, 20-50 times a query's time) then counts as a typical
one on both sides alike. On 2 shared cores at load 1-9 the summed ratio of scifact dev went 0.77-1.86x within 20
minutes, the median one 1.09-1.41x: neither is steady there. `load_avg_1m` is the load before and after.
"""
from __future__ import annotations

import os
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from souk.catalogs import read_catalog
from souk.index import Index
from souk.schema import beir_schema

K1, B = 1.2, 0.75  # tantivy's BM25 constants; the peer is configured to match


def bench_keyword(dataset: Path, split: str | None = None, k: int = 100, repeat: int = 1) -> dict[str, Any]:
    """Index `dataset` (a BEIR dir) with souk and bm25s, run every judged query with both, report ratios."""
    from souk.evaluation.datasets import load_beir
    from souk.evaluation.metrics import score_run

    split = split or _default_split(dataset)
    data = load_beir(dataset, split)
    records = list(read_catalog(dataset))
    queries = list(data.queries.items())
    load = os.getloadavg()[0]
    workdir = Path(tempfile.mkdtemp(prefix="souk-bench-"))
    try:
        t0 = time.perf_counter()
        index = Index.create(workdir / "index", beir_schema())
        with index.writer() as writer:
            writer.add(records, on_error="skip")
            writer.commit()
        searcher = index.searcher()
        t1 = time.perf_counter()
        impacts = searcher.prepare_bm25()  # part of indexing: scored postings per commit (as bm25s builds them)
        prepare_s = time.perf_counter() - t1
        index_s = time.perf_counter() - t0
        searcher.bm25("warm up", 1)
        searcher.ids()  # the key -> id table queries falling back to tantivy read (else built in a timed query)

        peer = _Peer(index.schema.analyzer_of(index.schema.fields["all"]))
        t0 = time.perf_counter()
        ids = peer.index(records)
        peer_index_s = time.perf_counter() - t0
        peer.search("warm up", ids, 1)
        sides = {"souk": lambda q: searcher.bm25(q, k).pairs(), "peer": lambda q: peer.search(q, ids, k)}
        runs, seconds, each = _interleaved(sides, queries, repeat)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    souk_m = score_run(runs["souk"], data.qrels, ["ndcg@10", "recall@100"]).means()
    peer_m = score_run(runs["peer"], data.qrels, ["ndcg@10", "recall@100"]).means()
    n, souk_s, peer_s = len(queries) * repeat, seconds["souk"], seconds["peer"]
    return {
        "dataset": str(dataset), "split": split, "docs": len(records), "queries": len(queries),
        "qps": round(n / souk_s, 1), "peer_qps": round(n / peer_s, 1), "ratio": round(peer_s / souk_s, 3),
        "cpu_ratio": round(seconds["peer_cpu"] / max(seconds["souk_cpu"], 1e-9), 3),
        "ratio_median": _median_ratio(each["peer"], each["souk"]),
        "cpu_ratio_median": _median_ratio(each["peer_cpu"], each["souk_cpu"]),
        "load_avg_1m": [round(load, 2), round(os.getloadavg()[0], 2)],
        "index_docs_per_s": round(len(records) / index_s, 1),
        "peer_index_docs_per_s": round(len(records) / peer_index_s, 1),
        "impacts": impacts, "impacts_s": round(prepare_s, 3),
        "ndcg@10": round(souk_m["ndcg@10"], 4), "peer_ndcg@10": round(peer_m["ndcg@10"], 4),
        "ndcg_delta": round(souk_m["ndcg@10"] - peer_m["ndcg@10"], 4),
        "recall@100": round(souk_m["recall@100"], 4), "peer_recall@100": round(peer_m["recall@100"], 4),
        "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peer": "bm25s (lucene, k1=1.2, b=0.75)",
    }


def _interleaved(sides: dict, queries: list[tuple[str, str]], repeat: int) -> tuple[dict, dict, dict]:
    """Run every query on every side, alternating which side goes first, so that machine noise
    (other processes, frequency changes) falls on both sides alike. Returns runs, seconds per side (wall clock
    under the side's name, this thread's CPU under `<name>_cpu`), and the same per query and repeat (arrays of
    repeat x queries seconds)."""
    runs: dict[str, dict] = {name: {} for name in sides}
    each = {key: np.zeros((repeat, len(queries))) for name in sides for key in (name, f"{name}_cpu")}
    order = list(sides)
    for r in range(repeat):
        for i, (qid, text) in enumerate(queries):
            for name in order if (i + r) % 2 == 0 else order[::-1]:
                c0, t0 = time.thread_time(), time.perf_counter()
                runs[name][qid] = sides[name](text)
                each[name][r, i] = time.perf_counter() - t0
                each[f"{name}_cpu"][r, i] = time.thread_time() - c0
    return runs, {key: float(a.sum()) for key, a in each.items()}, each


def _median_ratio(peer: np.ndarray, souk: np.ndarray) -> float:
    """Peer over souk in the sum over queries of each query's median time across the repeats."""
    return round(float(np.median(peer, axis=0).sum()) / max(float(np.median(souk, axis=0).sum()), 1e-9), 3)


class _Peer:
    """bm25s over souk's terms of title + text (the same text souk's `all` field indexes), at its best settings
    without optional compilers: the numpy backend (bm25s's `numba` backend needs numba, not a souk dependency),
    scores from `get_scores` and top-k by `argpartition`, hits assembled with array operations as souk's are."""

    def __init__(self, analyzer_name: str):
        from souk.analysis.registry import get_analyzer

        self.analyzer = get_analyzer(analyzer_name)

    def index(self, records) -> np.ndarray:
        try:
            import bm25s
        except ImportError:
            from souk.errors import SoukError

            raise SoukError("the keyword bench compares against bm25s: pip install 'souk[bench]'") from None

        docs = [r.data for r in records if r.data]
        corpus = [self.analyzer.terms(d.get("title", "")) + self.analyzer.terms(d.get("text", "")) for d in docs]
        self.model = bm25s.BM25(k1=K1, b=B, method="lucene")
        self.model.index(corpus, show_progress=False)
        self.vocab = self.model.vocab_dict
        return np.asarray([d["_id"] for d in docs])

    def search(self, text: str, ids: np.ndarray, k: int) -> list[tuple[str, float]]:
        vocab = self.vocab
        ids_q = [i for t in self.analyzer.terms(text) if (i := vocab.get(t)) is not None]  # (one lookup a term)
        if not ids_q:
            return []
        scores = self.model.get_scores(ids_q)
        # (selecting from the negated scores: numpy's introselect is several times slower on homedepot selecting
        # the largest of mostly-zero scores in place, measured)
        top = np.argpartition(-scores, min(k, len(scores) - 1))[:k]
        top = top[np.argsort(-scores[top])]
        top = top[scores[top] > 0]  # (vectorised, as souk's side assembles its pairs: no per-hit numpy scalars)
        return list(zip(ids[top].tolist(), scores[top].tolist()))  # (float32's tolist: the same Python floats)


def _default_split(dataset: Path) -> str:
    splits = sorted(p.stem for p in (dataset / "qrels").glob("*.tsv"))
    for preferred in ("test", "dev", "train"):
        if preferred in splits:
            return preferred
    return splits[0]
