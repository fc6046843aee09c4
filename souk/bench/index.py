"""`souk bench index`: souk indexing a BEIR corpus against bm25s indexing the same corpus with the same tokens.

Both sides start from the same records in memory and end with an index that answers BM25 queries. souk validates,
analyzes (batched, and in worker processes for a bulk load, see `AnalysisPool`), stores the source and commits a
fresh index (searchable at once; the impacts that speed up plain queries are built at its first search and timed
by `bench keyword`; `souk_impacts_cpu_s` is their CPU time when built right after each commit in the same process,
from the terms the writer handed over, and `cpu_ratio_with_impacts` counts it on souk's side). The peer analyzes
every document with souk's analyzer, one text at a time (the tokens souk's `all` field indexes; checked on a
sample, `same_tokens`), and builds its bm25s index (which stores no documents).
bm25s's own tokenizer (`bm25s.tokenize`, PyStemmer and souk's stopwords) is timed once beside it,
`peer_bm25s_tokenize_s`, to show the peer's analysis is no slower than its own would be. Runs alternate sides
(worker start-up counts on every souk run); medians are reported; `ratio` is souk's docs/s over the peer's. CPU
seconds (souk's include its workers') and the load average are reported too: on a shared machine wall-clock time
depends on the load more than on the work.

Where souk's time goes (one process, no worker, load 3.7-3.9, `time.thread_time` per part): scifact 0.81-0.85 CPU s
(main thread 0.57-0.60, analysis 0.44 of it; tantivy's threads 0.24), peer 0.94-1.24; homedepot 1.30-1.42 (main
0.85-0.93: documents built and handed to tantivy 0.38-0.41 (in a bare loop: key and JSON 0.11, `Document` and its
`add_*` 0.07, `add_document` 0.07-0.10), analysis 0.27, `extract` 0.12; tantivy 0.45-0.49,
commit 0.19-0.22 s of wall at the end), peer 1.24-1.53. So 2x in CPU is out of reach (tantivy alone is a third of
the peer on homedepot); 2x in wall needs the second core idle for a worker and tantivy's thread. Tried, not kept:
tantivy analyzing the raw text itself (regex, lowercase, souk's stopwords, snowball, registered on the index):
scifact 0.94-1.00, homedepot 0.67-1.06 CPU s against 0.59-0.93 and 0.52-0.57 for souk's batched terms indexed on
whitespace (and non-ASCII terms differ: 9,635 of 10,366 scifact texts alike); `Document(**fields)` 0.57-0.61 and
`add_json` 0.65-0.83 s against 0.49-0.57 for `add_*` calls (homedepot); leaving the id out of its keyword field
would save 0.10-0.15 s on homedepot, but filters, facets and sorts on the id field read it.
"""
from __future__ import annotations

import os
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from souk.catalogs import read_catalog
from souk.index import Index
from souk.schema import beir_schema, for_new_index

SAMPLE = 500  # documents whose tokens are compared between the two sides


def bench_index(dataset: Path, repeat: int = 2) -> dict[str, Any]:
    """Docs/s of `souk index` (in-process, same code path) and of bm25s on `dataset`, `repeat` runs each."""
    from souk.analysis.batch import _TABLES, _WHOLES
    from souk.analysis.filters import _KEPT, _STEMS
    from souk.bench.keyword import _Peer

    records = list(read_catalog(dataset))
    schema = for_new_index(beir_schema())
    peer = _Peer(schema.analyzer_of(schema.fields["all"]))
    times: dict[str, list[float]] = {"souk": [], "peer": []}
    cpu: dict[str, list[float]] = {"souk": [], "peer": []}
    impacts_cpu: list[float] = []  # souk's term store and impacts built right after each commit (not in `ratio`)
    workers, to_workers = 0, 0
    load = os.getloadavg()[0]
    for r in range(repeat):
        for side in ("souk", "peer") if r % 2 == 0 else ("peer", "souk"):
            _STEMS.clear()  # every run starts with no remembered stems (the first would otherwise warm the other's)
            _KEPT.clear()
            _TABLES.clear()
            _WHOLES.clear()
            c0 = _cpu()
            t0 = time.perf_counter()
            if side == "peer":
                peer.index(records)
                times[side].append(time.perf_counter() - t0)
                cpu[side].append(_cpu() - c0)
                continue
            workdir = Path(tempfile.mkdtemp(prefix="souk-bench-"))
            try:
                index = Index.create(workdir / "index", schema)
                with index.writer() as writer:
                    pool = writer._analysis_pool
                    writer.add(records, on_error="skip")
                    writer.commit()
                    workers, to_workers = pool.workers, pool.given
                times[side].append(time.perf_counter() - t0)
                cpu[side].append(_cpu() - c0)
                c0 = _cpu()
                index.searcher().prepare_bm25()  # (as a first search in this process would)
                impacts_cpu.append(_cpu() - c0)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
    souk_s, peer_s = statistics.median(times["souk"]), statistics.median(times["peer"])
    n = len(records)
    return {
        "dataset": str(dataset), "docs": n, "repeat": repeat,
        "docs_per_s": round(n / souk_s, 1), "peer_docs_per_s": round(n / peer_s, 1), "ratio": round(peer_s / souk_s, 3),
        "souk_runs_s": [round(t, 3) for t in times["souk"]], "peer_runs_s": [round(t, 3) for t in times["peer"]],
        "souk_cpu_s": [round(t, 3) for t in cpu["souk"]], "peer_cpu_s": [round(t, 3) for t in cpu["peer"]],
        "cpu_ratio": round(statistics.median(cpu["peer"]) / max(statistics.median(cpu["souk"]), 1e-9), 3),
        "souk_impacts_cpu_s": [round(t, 3) for t in impacts_cpu],
        "cpu_ratio_with_impacts": round(statistics.median(cpu["peer"]) / max(statistics.median(
            [a + b for a, b in zip(cpu["souk"], impacts_cpu)]), 1e-9), 3),
        "analysis_workers": workers, "batches_to_workers": to_workers,
        "same_tokens": _same_tokens(records, schema, peer), "peer_bm25s_tokenize_s": _bm25s_tokenize_s(records),
        "load_avg_1m": [round(load, 2), round(os.getloadavg()[0], 2)], "cores": os.cpu_count(),
        "peer": "bm25s (lucene) over souk's analyzer tokens of title + text, one text at a time",
    }


def _cpu() -> float:
    """CPU seconds of this process and of its children that have exited (souk's analysis workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _same_tokens(records: list, schema: Any, peer: Any) -> bool:
    """Whether souk's writer analysis gives a sample of documents the tokens the peer indexes."""
    from souk.analysis.batch import analyze_columns

    docs = [r.data for r in records[:SAMPLE] if r.data]
    specs = [(schema.analyzer_of(schema.fields["all"]), src) for src in schema.fields["all"].copy_from]
    columns = analyze_columns(specs, None, [[d.get(src) or None for d in docs] for _, src in specs])
    souk_terms = [" ".join(t for t in parts if t).split() for parts in zip(*columns)]
    peer_terms = [peer.analyzer.terms(d.get("title", "")) + peer.analyzer.terms(d.get("text", "")) for d in docs]
    return souk_terms == peer_terms


def _bm25s_tokenize_s(records: list) -> float | None:
    """Seconds bm25s's own tokenizer takes over the corpus (stemmed, souk's stopwords; tokens differ slightly)."""
    try:
        import bm25s
        import Stemmer
    except ImportError:
        return None
    from souk.analysis.filters import english_stopwords

    texts = [f"{r.data.get('title', '')} {r.data.get('text', '')}" for r in records if r.data]
    t0 = time.perf_counter()
    bm25s.tokenize(texts, stopwords=sorted(english_stopwords()), stemmer=Stemmer.Stemmer("english"),
                   token_pattern=r"[a-z0-9]+", show_progress=False, return_ids=False)
    return round(time.perf_counter() - t0, 3)
