"""`souk bench rerank`: souk's cross-encoder path against sentence-transformers' `CrossEncoder` in fp32
on the same weights and the same candidates, interleaved query by query (which side goes first
alternates, so load from other processes falls on both alike).

Candidates are the top `depth` of the index's pipeline before the cross stage (with `--index`) or of
BM25 over a temporary index of the dataset. The model is `--model`, else the index's active cross
model, else the bundled MiniLM with a new seeded head (speed and agreement, not quality, are measured
then). Quality: nDCG@10 of each side's cross-score ordering of the same candidates; `ndcg_delta` is
souk minus the peer. souk's time includes tokenizing the documents (no cache across queries).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from souk.errors import ConfigError


def _untrained_model(folder: Path, seed: int = 13) -> Path:
    """The bundled MiniLM with a new one-output head, saved as a cross-encoder directory."""
    from dataclasses import asdict

    from souk.models.cross_encoder import KIND, FieldLimits
    from souk.training.weights import new_model, save_model
    from souk.models.registry import model_card
    from souk.files import write_json_atomic

    base = model_card("all-MiniLM-L6-v2").path
    save_model(new_model(base, seed), folder, base)
    write_json_atomic(folder / "manifest.json",
                      {"kind": KIND, "base": "all-MiniLM-L6-v2", "limits": asdict(FieldLimits()),
                                                 "created": f"untrained-{seed}", "note": "new head, untrained"})
    return folder


def same_inputs(packer: Any, query: str, docs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(query, document) strings holding exactly the tokens `packer` feeds the model for each pair."""
    q = packer.tokens([query], packer.limits.query)[0]
    out = []
    for doc in packer.doc_tokens(docs):
        ids, types = packer.pack(q, doc)
        split = types.index(1) if 1 in types else len(types)
        out.append((packer.tok.decode(ids[1:split - 1]), packer.tok.decode(ids[split:-1], skip_special_tokens=False)))
    return out


def _candidates(dataset: Path, split_queries: dict[str, str], index: Path | None, depth: int, work: Path):
    """(searcher, {qid: ids}) from the index's pre-cross stages, or BM25 over a temporary index."""
    from souk.index import Index

    if index is None:
        from souk.catalogs import read_catalog
        from souk.schema import beir_schema

        idx = Index.create(work / "index", beir_schema())
        with idx.writer() as w:
            w.add(read_catalog(dataset))
            w.commit()
        searcher = idx.searcher()
        return searcher, {q: searcher.bm25(text, depth, relaxed=True).ids for q, text in split_queries.items()}
    from souk.training.kit import candidates, prior_pipeline

    searcher = Index.open(index).searcher()
    found = candidates(prior_pipeline(searcher), split_queries, depth)
    return searcher, {q: ids for q, (ids, _) in found.items()}


def bench_rerank(dataset: Path, split: str, index: Path | None = None, model: Path | None = None, depth: int = 20,
                 max_queries: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Pairs/s of both sides, their ratio, souk's p50 per query for the top `depth`, and the nDCG@10 delta."""
    import torch
    from sentence_transformers import CrossEncoder as PeerCrossEncoder

    from souk.evaluation.datasets import load_beir
    from souk.evaluation.metrics import score_run
    from souk.models.cross_encoder import CrossEncoder, with_pooling
    from souk.models.backends import quiet_transformers
    from souk.models.store import resolve
    from souk.progress import progress_bar
    from souk.ranking.rerank import doc_fields, doc_pair

    from souk.models.cross_encoder import torch_threads

    torch.set_num_threads(torch_threads())  # the same for both sides
    data = load_beir(dataset, split)
    qids = sorted(data.qrels)
    if max_queries is not None:
        qids = sorted(np.random.default_rng(0).choice(qids, size=min(max_queries, len(qids)), replace=False).tolist())
    queries = {q: data.queries[q] for q in qids}
    with tempfile.TemporaryDirectory(prefix="souk-bench-rerank-") as tmp:
        work = Path(tmp)
        searcher, lists = _candidates(dataset, queries, index, depth, work)
        if model is None and index is not None:
            model = resolve(index, "cross")
        label = str(model) if model is not None else "all-MiniLM-L6-v2 (new head, untrained)"
        path = Path(model) if model is not None else _untrained_model(work / "model")
        if not (path / "manifest.json").is_file():
            raise ConfigError(f"--model: {path} is not a cross-encoder model directory")
        ours = CrossEncoder(path)
        quiet_transformers()
        # the peer reads exactly the text souk's packer keeps (query, title and text each cut to their token
        # budget), given back as strings: both sides then score the same inputs, and only the path differs
        peer = PeerCrossEncoder(str(path), device="cpu", max_length=ours.packer.limits.max_length + 16)
        # a model fitted with mean pooling (`souk_pooling`, which sentence-transformers does not read) pools so
        # there too: both sides compute one function, only the inference path differs
        with_pooling(peer.model)
        identity = torch.nn.Identity()
        fields = ours.fields if "fields" in ours.manifest else doc_fields(searcher.schema)
        all_ids = sorted({d for ids in lists.values() for d in ids})
        docs = dict(zip(all_ids, (doc_pair(d, fields) for d in searcher.docs(all_ids))))

        def souk_side(q: str, ids: list[str], qid: str = "") -> np.ndarray:
            return ours.score(q, [docs[d] for d in ids])

        peer_pairs = {qid: same_inputs(ours.packer, queries[qid], [docs[d] for d in ids]) for qid, ids in lists.items()}

        def peer_side(q: str, ids: list[str], qid: str) -> np.ndarray:
            return np.asarray(peer.predict(peer_pairs[qid], batch_size=32, activation_fn=identity,
                                           show_progress_bar=False),
                              dtype=np.float32)

        sides = {"souk": souk_side, "peer": peer_side}
        warm = next(iter(lists))
        for fn in sides.values():
            fn(queries[warm], lists[warm], warm)
        seconds = {s: 0.0 for s in sides}
        per_query_ms: list[float] = []
        runs: dict[str, dict[str, list[tuple[str, float]]]] = {s: {} for s in sides}
        pairs = 0
        with progress_bar(f"reranking top {depth} ({ours.backend} vs sentence-transformers fp32)", len(lists),
                          enabled=progress) as advance:
            for i, (qid, ids) in enumerate(lists.items()):
                if not ids:
                    advance()
                    continue
                for side in (("souk", "peer") if i % 2 == 0 else ("peer", "souk")):
                    t0 = time.perf_counter()
                    scores = sides[side](queries[qid], ids, qid)
                    took = time.perf_counter() - t0
                    seconds[side] += took
                    if side == "souk":
                        per_query_ms.append(took * 1e3)
                    runs[side][qid] = list(zip(ids, scores.astype(np.float64).tolist()))
                pairs += len(ids)
                advance()
    ndcg = {s: float(score_run(runs[s], {q: data.qrels[q] for q in qids}, ["ndcg@10"]).means()["ndcg@10"])
            for s in sides}
    ours_speed, peer_speed = pairs / max(seconds["souk"], 1e-9), pairs / max(seconds["peer"], 1e-9)
    return {
        "dataset": data.name, "split": split, "queries": len(lists), "pairs": pairs, "depth": depth,
        "model": label, "backend": ours.backend, "max_length": ours.packer.limits.max_length,
        "threads": torch.get_num_threads(),
        "peer": "sentence-transformers CrossEncoder fp32",
        "ndcg@10": round(ndcg["souk"], 4), "peer_ndcg@10": round(ndcg["peer"], 4),
        "pairs_per_s": round(ours_speed, 1), "peer_pairs_per_s": round(peer_speed, 1),
        "ratio": round(ours_speed / peer_speed, 2),
        "p50_ms_top20": round(float(np.percentile(per_query_ms, 50)), 1) if per_query_ms else None,
        "ndcg_delta": round(ndcg["souk"] - ndcg["peer"], 4),
    }
