"""The `cross` stage: a fitted cross-encoder rescores the head of the list, mixed with the previous
stage's scores the way its manifest says (`Combination`).

Options (`[pipelines.rerank.cross]` or `{stage = "cross", ...}`):
  model       a model of this index (`cross-2`) or a model directory, relative to the index (default: the active one)
  batch_size  pairs per forward pass                                        (default 32)
  max_length  tokens per pair                                               (default: the model's own)
  backend     "auto" | a path of `souk.models.cross_encoder.PATHS`            (default "auto")
Without a fitted model the stage is unavailable (`souk fit --stages cross` makes one).
Concurrent searches (the server's threads) share forward passes: their pairs are scored together by a
`MicroBatcher` (a search finding the model idle runs at once; those arriving meanwhile go in the next pass).
Misuse: a depth far beyond the one the model was fitted at (20): the mix with the previous stage's
scores was chosen on lists of that length.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from souk.errors import ConfigError, ModelError, ModelUnavailable
from souk.models.batching import MicroBatcher
from souk.models.cross_encoder import (PATHS, CrossEncoder, TokenCache, measure_paths, measured_path, model_fields,
                                       path_here)
from souk.models.store import read_model_manifest
from souk.models import store
from souk.query.plan import QueryPlan
from souk.plugins import POSITIVE_INT, option_check, parse_options
from souk.ranking.stage import STAGES, Stage, StageContext
from souk.types import Ranking

if TYPE_CHECKING:
    from souk.index.searcher import Searcher



@dataclass
class CrossOptions:
    """Stage `cross`: `model` (default: the active one), `batch_size`, `max_length` (default: the model's),
    `backend`."""

    model: str | None = None
    batch_size: int = field(default=32, metadata=POSITIVE_INT)
    max_length: int | None = field(default=None, metadata=option_check(lambda v: v is None or 16 <= v <= 512,
                                                                       "an integer in 16..512"))
    backend: str = field(default="auto", metadata=option_check(lambda v: v in ("auto", *PATHS),
                                                               "one of auto, " + ", ".join(PATHS)))
TITLE_NAMES = ("title", "name", "product_title")
MAX_SHARED_PAIRS = 256  # pairs of concurrent searches scored in one pass (a search's own pairs always go whole)


def doc_fields(schema) -> dict[str, Any]:
    """Which stored fields are the title and which the text: a field named like a title, else the first
    of several content fields; the remaining content fields are the text."""
    names = [n for n in schema.content_fields() if schema.fields[n].stored]
    title = next((n for n in names if n in TITLE_NAMES), names[0] if len(names) > 1 else None)
    return {"title": title, "text": [n for n in names if n != title]}


def doc_pair(doc: dict[str, Any] | None, fields: dict[str, Any]) -> tuple[str, str]:
    """(title, text) of a stored document by the model's fields ("" where absent)."""
    if not doc:
        return "", ""
    title = str(doc.get(fields["title"]) or "") if fields.get("title") else ""
    text = " ".join(str(doc[n]) for n in fields.get("text", []) if doc.get(n))
    return title, text


class CrossStage(Stage):
    """Scores candidates with a cross-encoder; document tokens are cached per snapshot."""

    name = "cross"

    def __init__(self, searcher: Searcher, model: CrossEncoder, fields: dict[str, Any] | None = None):
        self.searcher = searcher
        self.model = model
        self.fields = fields or model.fields
        self.cache = TokenCache()
        self._score = MicroBatcher(self._score_pairs, max_items=MAX_SHARED_PAIRS)

    @property
    def path(self) -> str:
        """The inference path the model runs on (`souk eval --json` reports it), or why it does not run."""
        return self.model.backend if self.model.combination.reads_cross else "not run (mixed at weight 0)"

    def rerank(self, plan: QueryPlan, candidates: Ranking) -> Ranking:
        return self.rerank_many([plan], [candidates])[0]

    def rerank_many(self, plans: Sequence[QueryPlan], candidates: Sequence[Ranking]) -> list[Ranking]:
        """Every query's pairs scored in one pass of the model (its batches cut across queries); none when the
        model's combination gives the cross score no weight (the previous order stands, `cross_model` is NaN)."""
        combination = self.model.combination
        if not combination.reads_cross:
            return [Ranking(r.ids, combination.apply(np.full(len(r), np.nan, dtype=np.float32),
                                                     np.asarray(r.scores, dtype=np.float32)),
                            {**r.signals, "cross_model": np.full(len(r), np.nan, dtype=np.float32)})
                    if len(r) else r for r in candidates]
        packer = self.model.packer
        queries = packer.tokens([plan.text for plan in plans], packer.limits.query)
        pairs, bounds = [], [0]
        for query, ranking in zip(queries, candidates):
            docs = self.cache.get_many(ranking.ids, self._tokens) if len(ranking) else []
            pairs += [packer.pack(query, d) for d in docs]
            bounds.append(len(pairs))
        cross = self._score(pairs) if pairs else np.zeros(0, dtype=np.float32)
        out = []
        for i, ranking in enumerate(candidates):
            if not len(ranking):
                out.append(ranking)
                continue
            mine = cross[bounds[i]:bounds[i + 1]]
            scores = self.model.combination.apply(mine, np.asarray(ranking.scores, dtype=np.float32))
            out.append(Ranking(ranking.ids, scores, {**ranking.signals, "cross_model": mine}))
        return out

    def _score_pairs(self, pairs: list) -> np.ndarray:
        return self.model.score_pairs(pairs)

    def _tokens(self, ids: list[str]) -> list[tuple[list[int], list[int]]]:
        return self.model.packer.doc_tokens([doc_pair(d, self.fields) for d in self.searcher.docs(ids)])


PROBE_DOCS = 24


def probe_triples(searcher: Searcher, fields: dict[str, Any], n: int = PROBE_DOCS) -> list[tuple[str, str, str]]:
    """(query, title, text) triples for measuring a cross-encoder's paths on this index's own documents: each of
    `n` sampled documents (a fixed seed) with the first words of its own title (a likely match) and of the next
    one's (a likely miss), so the probe spans the scores the model gives real candidates."""
    import random

    ids = searcher.ids()
    docs = [doc_pair(d, fields) for d in searcher.docs(random.Random(0).sample(ids, min(n, len(ids))))]
    queries = [" ".join((title or text).split()[:3]) or "a" for title, text in docs]
    return [(queries[(i + shift) % len(docs)], title, text) for i, (title, text) in enumerate(docs) for shift in (0, 1)]


def cross_stage(context: StageContext, options: dict[str, Any]) -> CrossStage:
    opts = parse_options("cross", options, CrossOptions)
    batch, max_length, backend = opts.batch_size, opts.max_length, opts.backend
    try:
        chosen = store.resolve(context.index_path, "cross", opts.model) if backend == "auto" else None
        if chosen is not None:  # the measured path, or the unmeasured one (a search never waits for a measurement)
            backend = path_here(chosen, max_length)[0]
        model = store.load(context.index_path, "cross", CrossEncoder, opts.model,
                           options=(backend, batch, max_length), unfitted="no fitted cross-encoder in this index; "
                           "run `souk fit --stages cross`")
    except ModelUnavailable:
        raise  # a damaged or refused model: the stage is off (skipped where optional), the search goes on
    except ModelError as e:
        raise ConfigError(f"cross.model: {e}") from e
    return CrossStage(context.searcher, model)


def measure_model(index_path: Path, model: Path, max_length: int | None = None) -> dict[str, Any]:
    """Measure a cross-encoder's paths on this machine on the index's own documents (`probe_triples`) unless
    this machine measured them already; returns the verdict (`backend`, each path's pairs/s and agreement).
    Takes seconds (every path is loaded, torch too): call it where nobody waits for a search (activation, a
    server's background), never from a stage factory."""
    from souk.index import Index

    fields = model_fields(read_model_manifest(model, "cross-encoder"))
    return measure_paths(model, probe_triples(Index.open(index_path).searcher(), fields), max_length)


def cross_uses(pipelines: dict[str, Any] | None) -> list[tuple[str | None, int | None]]:
    """Each (pinned model name or None for the active one, `max_length`) with which a pipeline of an index
    (`pipelines`: its config's table; the presets too) runs a cross stage on the measured path (`backend`
    auto). Pipelines whose config does not parse are left to the search that reports them."""
    from souk.ranking.pipeline import PIPELINE_KEYS, pipeline_names, stage_specs

    out: dict[tuple[str | None, int | None], None] = {}
    for name in pipeline_names(pipelines):
        try:
            specs = stage_specs(name, pipelines)
        except ConfigError:
            continue
        for spec in specs:
            if spec.get("stage") != "cross":
                continue
            try:
                opts = parse_options("cross", {k: v for k, v in spec.items() if k not in PIPELINE_KEYS},
                                     CrossOptions)
            except ConfigError:
                continue
            if opts.backend == "auto":
                out[(opts.model, opts.max_length)] = None
    return list(out)


def unmeasured_crosses(index_path: Path, pipelines: dict[str, Any] | None) -> list[tuple[Path, int | None]]:
    """Each (cross-encoder directory, `max_length`) of `cross_uses` that this machine has not measured yet
    (models that do not resolve are left to the search that reports them)."""
    out: dict[tuple[Path, int | None], None] = {}
    for name, max_length in cross_uses(pipelines):
        try:
            model = store.resolve(index_path, "cross", name)
        except ModelError:
            continue
        if model is not None and measured_path(model, max_length) is None:
            out[(model, max_length)] = None
    return list(out)


STAGES.register("cross", cross_stage)

