"""`souk bench spell`: does spelling correction help BM25 on real shopper typos?

Every judged query of a BEIR split goes through the Speller; a changed query is searched as corrected
when `decide()` says "rewrite" (the typed query finds almost nothing and the correction plenty), and as
typed otherwise ("suggest" only shows a "did you mean"). Reports the share of queries changed, nDCG@10
on those and on the whole split before and after, and the same for "always rewrite" as a reference.
Runs through `souk.evaluation.runner.evaluate` with the `bm25` pipeline, so latency includes spelling.
"""
from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from souk.errors import ConfigError
from souk.query.spell import SpellConfig, Speller, correction_hits, decide
from souk.types import Ranking

METRIC = "ndcg@10"


class CorrectingPipeline:
    """A pipeline that spell-corrects each query first; `mode` is "policy" (decide) or "always"."""

    def __init__(self, base, speller: Speller, searcher, mode: str = "policy", plenty: int = 1):
        self.base, self.speller, self.searcher = base, speller, searcher
        self.mode, self.plenty = mode, plenty
        self.log: dict[str, tuple[str, str, str]] = {}  # query -> (corrected, decision, edits)

    def search(self, query: str, k: int) -> Ranking:
        correction = self.speller.correct(query)
        text = query
        if correction.changed:
            if self.mode == "always":
                decision = "rewrite"
            else:
                decision = decide(*correction_hits(self.searcher, self.speller.lexicon, correction), plenty=self.plenty)
            if decision == "rewrite":
                text = correction.corrected
            edits = "; ".join(f"{e.kind}: {e.original} -> {e.replacement}" for e in correction.edits)
            self.log[query] = (correction.corrected, decision, edits)
        return self.base.search(text, k)


def parse_overrides(pairs: Sequence[str]) -> SpellConfig:
    """`KEY=VALUE` pairs over the SpellConfig defaults; unknown keys and bad values name the key."""
    fields = {f.name: f for f in dataclasses.fields(SpellConfig)}
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or key not in fields:
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE with KEY one of {', '.join(fields)}")
        kind = type(getattr(SpellConfig(), key))
        try:
            values[key] = kind(raw)
        except ValueError:
            raise ConfigError(f"--set {key}: expected {kind.__name__}, got {raw!r}") from None
    return SpellConfig(**values)


def bench_spell(dataset: Path, split: str = "dev", index: Path | None = None, config: SpellConfig | None = None,
                log: Path | None = None, plenty: int = 1, k: int = 100, examples: int = 15,
                progress: bool = True) -> dict[str, Any]:
    """Measure BM25 with and without spelling correction on one split (an index is built when none given)."""
    from souk.evaluation.datasets import load_beir
    from souk.evaluation.runner import evaluate
    from souk.index import Index
    from souk.query.lexicon import load_lexicon
    from souk.ranking.pipeline import build_pipeline

    data = load_beir(dataset, split)
    workdir = None
    try:
        if index is None:
            workdir = Path(tempfile.mkdtemp(prefix="souk-bench-spell-"))
            index = workdir / "index"
            _build_index(dataset, index)
        searcher = Index.open(index).searcher()
        t0 = time.perf_counter()
        lexicon = load_lexicon(searcher, progress=progress)
        if log is not None:
            lexicon = lexicon.with_log(log)
        speller = Speller(lexicon, config)
        lexicon_s = time.perf_counter() - t0
        base = build_pipeline("bm25", searcher)
        plain = evaluate(base, data, k=k, metrics=[METRIC], progress=progress)
        runs = {}
        for mode in ("policy", "always"):
            pipe = CorrectingPipeline(base, speller, searcher, mode, plenty)
            runs[mode] = (pipe, evaluate(pipe, data, k=k, metrics=[METRIC], progress=progress))
    finally:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
    qids = plain.per_query.qids
    before = plain.per_query.values[METRIC]
    policy, policy_eval = runs["policy"]
    after = policy_eval.per_query.values[METRIC]
    always = runs["always"][1].per_query.values[METRIC]
    texts = [data.queries[q] for q in qids]
    changed = np.array([t in policy.log for t in texts])
    rewritten = np.array([t in policy.log and policy.log[t][1] == "rewrite" for t in texts])
    decisions = [policy.log[t][1] for t in texts if t in policy.log]

    def mean(values: np.ndarray, mask: np.ndarray | None = None) -> float:
        picked = values if mask is None else values[mask]
        return round(float(picked.mean()), 4) if len(picked) else 0.0

    delta = after - before
    order = np.argsort(-np.abs(delta))
    shown = [{"query": texts[i], "corrected": policy.log[texts[i]][0], "edits": policy.log[texts[i]][2],
              "before": round(float(before[i]), 4), "after": round(float(after[i]), 4)}
             for i in order[:examples] if rewritten[i]]
    return {
        "dataset": data.name, "split": split, "queries": len(qids), "metric": METRIC,
        "changed": int(changed.sum()), "changed_share": round(float(changed.mean()), 4) if len(qids) else 0.0,
        "decisions": {d: decisions.count(d) for d in ("rewrite", "suggest", "none")},
        "changed_before": mean(before, changed), "changed_after": mean(after, changed),
        "rewritten_before": mean(before, rewritten), "rewritten_after": mean(after, rewritten),
        "all_before": mean(before), "all_after": mean(after),
        "wins": int((delta > 0).sum()), "losses": int((delta < 0).sum()),
        "always_rewrite": {"changed_after": mean(always, changed), "all_after": mean(always),
                           "wins": int((always > before).sum()), "losses": int((always < before).sum())},
        "correction_ms_mean": round(float((policy_eval.latency_ms - plain.latency_ms).mean()), 3) if len(qids) else 0.0,
        "lexicon_seconds": round(lexicon_s, 3), "plenty": plenty,
        "config": dataclasses.asdict(speller.config), "largest_changes": shown,
    }


def _build_index(dataset: Path, path: Path) -> None:
    from souk.catalogs import read_catalog
    from souk.index import Index
    from souk.schema import beir_schema

    index = Index.create(path, beir_schema())
    with index.writer() as writer:
        writer.add(read_catalog(dataset), on_error="skip")
        writer.commit()
