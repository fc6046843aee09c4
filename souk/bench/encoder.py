"""`souk bench encoder`: souk's chosen encoder path against sentence-transformers' default fp32 encode.

Both encode the same corpus in the same process; chunks alternate between the two (and which goes
first), so load from other processes falls on both alike. Quality: nDCG@10 of exact inner-product
search with each side's own query and document vectors, on one qrels split.
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import AbstractSet, Any, Callable, Sequence

import numpy as np

from souk.models.backends import PROBE_DOCS, capped_to_avx2, choose_backend, quiet_transformers
from souk.models.encoder import EncoderConfig, TransformerEncoder, get_encoder
from souk.models.isa import report as isa_report
from souk.models.registry import model_card

CHUNK = 256


def corpus_texts(
    dataset: Path, must_keep: AbstractSet[str] = frozenset(), max_docs: int | None = None, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Ids and texts (title + " " + text, as the writer joins them) of a BEIR corpus; with `max_docs`,
    a seeded sample that keeps every document in `must_keep` (the judged ones)."""
    from souk.evaluation.datasets import iter_beir_corpus

    docs = [(d["_id"], " ".join(str(d[f]) for f in ("title", "text") if d.get(f))) for d in iter_beir_corpus(dataset)]
    if max_docs is not None and max_docs < len(docs):
        keep = np.fromiter((i in must_keep for i, _ in docs), dtype=bool, count=len(docs))
        rest = np.flatnonzero(~keep)
        extra = np.random.default_rng(seed).choice(rest, size=max(0, min(len(rest), max_docs - int(keep.sum()))),
                                                   replace=False)
        keep[extra] = True
        docs = [d for d, k in zip(docs, keep) if k]
    return [i for i, _ in docs], [t for _, t in docs]


def exact_run(
    doc_ids: Sequence[str], docs: np.ndarray, qids: Sequence[str], queries: np.ndarray, k: int = 10
) -> dict[str, list[tuple[str, float]]]:
    """Top-k by inner product for every query (brute force, the reference)."""
    sims = queries @ docs.T
    top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return {q: [(doc_ids[j], float(sims[i, j])) for j in top[i]] for i, q in enumerate(qids)}


def default_split(dataset: Path) -> str:
    from souk.bench.keyword import _default_split

    return _default_split(dataset)


def bench_encoder(dataset: Path, split: str | None = None, max_docs: int | None = None,
                  progress: bool = True) -> dict[str, Any]:
    """Docs/s of souk's path and of the peer, their ratio, and nDCG@10 of each on `split`."""
    from sentence_transformers import SentenceTransformer

    from souk.evaluation.datasets import load_beir
    from souk.evaluation.metrics import score_run
    from souk.progress import progress_bar

    split = split or default_split(dataset)
    data = load_beir(dataset, split)
    judged = {d for rel in data.qrels.values() for d in rel}
    doc_ids, texts = corpus_texts(dataset, judged, max_docs)
    config = EncoderConfig()
    choice = choose_backend(config, texts[:PROBE_DOCS], refresh=True)  # measured now: a cached verdict may date from
    # another load (the last one chose torch-bf16 at 101 docs/s over openvino-bf16 at 88)
    ours: TransformerEncoder = get_encoder(replace(config, backend=choice["backend"]))
    quiet_transformers()
    peer = SentenceTransformer(str(model_card(config.model).path), device="cpu")
    peer.max_seq_length = config.max_length
    sides: dict[str, Callable[[list[str]], np.ndarray]] = {
        "souk": ours.encode,
        "peer": lambda t: peer.encode(t, batch_size=32, normalize_embeddings=True, show_progress_bar=False),
    }
    for encode in sides.values():
        encode(texts[:32])  # warm up
    seconds = {s: 0.0 for s in sides}
    vectors: dict[str, list[np.ndarray]] = {s: [] for s in sides}
    with progress_bar(f"encoding ({ours.backend} vs sentence-transformers)", 2 * len(texts),
                      enabled=progress) as advance:
        for i, start in enumerate(range(0, len(texts), CHUNK)):
            part = texts[start:start + CHUNK]
            for side in (("souk", "peer") if i % 2 == 0 else ("peer", "souk")):
                t0 = time.perf_counter()
                vectors[side].append(np.asarray(sides[side](part), dtype=np.float32))
                seconds[side] += time.perf_counter() - t0
                advance(len(part))
    qids, qtexts = list(data.queries), list(data.queries.values())
    ndcg = {}
    for side, encode in sides.items():
        run = exact_run(doc_ids, np.concatenate(vectors[side]), qids, np.asarray(encode(qtexts), dtype=np.float32))
        ndcg[side] = score_run(run, data.qrels, ["ndcg@10"]).means()["ndcg@10"]
    docs_per_s, peer_docs_per_s = len(texts) / seconds["souk"], len(texts) / seconds["peer"]
    return {
        "dataset": str(dataset), "split": split, "docs": len(texts), "queries": len(qids),
        "max_length": config.max_length,
        "isa": "avx2" if capped_to_avx2() else "native", **({"cap": isa_report()} if capped_to_avx2() else {}),
        "ndcg@10": round(ndcg["souk"], 4), "peer_ndcg@10": round(ndcg["peer"], 4),
        "probe": {n: r for n, r in choice["paths"].items()}, "peer": "sentence-transformers fp32 (batch 32)",
        "docs_per_s": round(docs_per_s, 1), "peer_docs_per_s": round(peer_docs_per_s, 1),
        "ratio": round(docs_per_s / peer_docs_per_s, 2), "ndcg_delta": round(ndcg["souk"] - ndcg["peer"], 4),
        "path": ours.backend,
    }


def bench_encoder_capped(dataset: Path, split: str | None = None, max_docs: int | None = None) -> dict[str, Any]:
    """`bench_encoder` in a child process that runs as on an AVX2-only CPU (`souk.models.isa`: the CPUID mask
    where it can be built, else the cap variables): what souk chooses and how fast it runs without AVX-512, VNNI or
    AMX, against sentence-transformers capped alike. The result's `cap` says how it was capped and `uncapped`
    lists what still ran on the full instruction set."""
    import json
    import os
    import subprocess
    import sys
    import tempfile

    from souk.errors import SoukError
    from souk.models.isa import avx2_env

    cmd = [sys.executable, "-m", "souk", "bench", "encoder", "--dataset", str(dataset), "--json"]
    cmd += ["--split", split] if split else []
    cmd += ["--max-docs", str(max_docs)] if max_docs else []
    with tempfile.TemporaryDirectory(prefix="souk-avx2-") as folder:
        env, how = avx2_env(Path(folder))
        done = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise SoukError(f"the AVX2-capped encoder bench failed (exit {done.returncode}): {done.stderr.strip()[-300:]}")
    result = json.loads(lines[-1])
    result["isa"] = "avx2"
    cap = result.pop("cap", {})
    return {"cap": {**cap, "how": how}, "uncapped": cap.get("uncapped", []), **result}  # measured keys stay last
