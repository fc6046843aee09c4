"""`souk bench ann`: each FAISS index type against exact search on the same vectors.

Per type: build seconds, recall@k of the exact top-k, queries/s one query at a time on one thread (as
a server answers them), serialized size, and nDCG@10 on the split's judgments.
"""
from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

import numpy as np

from souk.bench.encoder import corpus_texts, default_split
from souk.index.keys import doc_keys
from souk.index.vectors import INDEX_TYPES, VectorSet, encoder_config, validate_params
from souk.models.backends import PROBE_DOCS
from souk.models.checkpoints import encode_resumable
from souk.models.encoder import get_encoder

MIN_SECONDS = 1.0  # each type is timed over at least this long


def bench_ann(dataset: Path, split: str | None = None, types: Sequence[str] | None = None, transform: str = "none",
              max_docs: int | None = None, k: int = 10, progress: bool = True) -> dict[str, Any]:
    import faiss

    from souk.evaluation.datasets import load_beir
    from souk.evaluation.metrics import score_run

    split = split or default_split(dataset)
    data = load_beir(dataset, split)
    doc_ids, texts = corpus_texts(dataset, {d for rel in data.qrels.values() for d in rel}, max_docs)
    params = {n: validate_params(SimpleNamespace(name="bench", params={"index": n, "transform": transform}))
              for n in (types or INDEX_TYPES)}
    first = next(iter(params.values()))
    encoder = get_encoder(encoder_config(first), probe=texts[:PROBE_DOCS])
    docs = encode_resumable(encoder, texts, progress=progress, description="encoding corpus")
    queries = get_encoder(encoder_config(first, queries=True)).encode(list(data.queries.values()))
    keys = doc_keys(doc_ids)
    id_of = dict(zip(keys.tolist(), doc_ids))
    exact = VectorSet.build(keys, docs, validate_params(SimpleNamespace(name="bench", params={"transform": transform})))
    truth, _ = exact.search(queries, k)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    rows = []
    try:
        for name, p in params.items():
            t0 = time.perf_counter()
            vs = VectorSet.build(keys, docs, p)
            build_s = time.perf_counter() - t0
            found, scores = vs.search(queries, k)
            recall = np.mean([len(np.intersect1d(a, b)) / k for a, b in zip(found, truth)])
            run = {q: [(id_of[int(key)], float(s)) for key, s in zip(row, srow) if key >= 0]
                   for q, row, srow in zip(data.queries, found, scores)}
            rows.append({"index": name, f"recall@{k}": round(float(recall), 4), "qps": round(_qps(vs, queries, k), 1),
                         "memory_mb": round(vs.memory_bytes() / 2**20, 2), "build_s": round(build_s, 2),
                         "ndcg@10": round(score_run(run, data.qrels, ["ndcg@10"]).means()["ndcg@10"], 4)})
    finally:
        faiss.omp_set_num_threads(threads)
    return {"dataset": str(dataset), "split": split, "docs": len(doc_ids), "queries": len(queries),
            "dim": int(docs.shape[1]),
            "transform": transform, "encoder": encoder.backend, "threads": 1, "rows": rows}


def _qps(vs: VectorSet, queries: np.ndarray, k: int) -> float:
    done, t0 = 0, time.perf_counter()
    while True:
        for i in range(len(queries)):
            vs.search(queries[i:i + 1], k)
        done += len(queries)
        elapsed = time.perf_counter() - t0
        if elapsed >= MIN_SECONDS:
            return done / elapsed
