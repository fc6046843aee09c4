"""Pipelines: named lists of stages, declared in the index config or taken from presets.

```toml
[pipelines.mine]
stages = [
  {stage = "recall", retrievers = ["bm25", "dense"], depth = 200},
  {stage = "ltr", depth = 200, keep = 50},
  {stage = "cross", depth = 20},
]
```
Each stage after recall reads the top `depth` candidates (default 100) and scores them (the pipeline
orders them by those scores, ties kept in their earlier order); the rest
follow below, in their earlier order, unless `keep` cuts the list; `optional = true` skips a stage
that cannot be built (no fitted model) and says so in the plan notes. Presets (`PRESETS`) are the
same lists; a preset's table in the config may override its recall options with top-level keys
(`[pipelines.hybrid] fusion = "rrf"`) and any stage's options with a sub-table named after the stage
(`[pipelines.full.cross] depth = 10`). Every run records per-stage timings and scores (`explain`).
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from souk.errors import ConfigError, ModelError
from souk.query.plan import Planner, QueryPlan
from souk.ranking.recall import FUSION_DEFAULTS, RecallStage
from souk.errors import Unavailable
from souk.plugins import POSITIVE_INT, option_check, parse_options
from souk.ranking.stage import STAGES, Stage, StageContext, rerank_many
from souk.types import Explanation, Ranking

if TYPE_CHECKING:
    from souk.index.searcher import Searcher

_HYBRID = {"stage": "recall", "retrievers": ["bm25", "dense"], **FUSION_DEFAULTS, "match": "any"}
# Learned pipelines recall with every retriever the index can run: BM25 always, dense where it has vectors,
# wordvec where a word-vector model was fitted (its weight: the one its fitter chose on held-out train queries).
_LEARNED_RECALL = {**_HYBRID, "retrievers": ["bm25", "dense?", "wordvec?"]}
PRESETS: dict[str, list[dict[str, Any]]] = {
    "keyword": [{"stage": "recall", "retrievers": ["bm25"]}],
    "bm25": [{"stage": "recall", "retrievers": ["bm25"], "match": "any"}],  # the raw baseline: any word, no spelling
    "dense": [{"stage": "recall", "retrievers": ["dense"]}],
    "hybrid": [_HYBRID],
    # interact (fitted for indexes without a pretrained encoder, e.g. Chinese) runs before ltr wherever it exists:
    # its score is one more signal for ltr, which is fitted on exactly these candidates
    "ltr": [_LEARNED_RECALL, {"stage": "interact", "depth": 100, "optional": True}, {"stage": "ltr"}],
    "rerank": [_LEARNED_RECALL, {"stage": "cross", "depth": 20}],
    "full": [_LEARNED_RECALL, {"stage": "interact", "depth": 100, "optional": True}, {"stage": "ltr", "optional": True},
             {"stage": "cross", "depth": 20, "optional": True}],
}
PIPELINE_KEYS = {"stage", "depth", "keep", "optional"}  # read by the pipeline, not passed to the stage


@dataclass
class StepOptions:
    """What the pipeline reads of a later stage's table: candidates in (`depth`), out (`keep`), `optional`."""

    depth: int = field(default=100, metadata=POSITIVE_INT)
    keep: int | None = field(default=None, metadata=option_check(lambda v: v is None or v > 0, "a positive integer"))
    optional: bool = False


@dataclass
class StageRun:
    """What one stage did for one query: its output (ids + its scores), its wall time and, where the stage
    reports them, its parts' times (recall: each retriever's)."""

    name: str
    ranking: Ranking
    ms: float
    parts: dict[str, float] = field(default_factory=dict)


@dataclass
class PipelineRun:
    """The final ranking of one query with every stage's output, for timings and `explain`."""

    plan: QueryPlan
    ranking: Ranking
    stages: list[StageRun] = field(default_factory=list)

    @property
    def timings_ms(self) -> dict[str, float]:
        """Each stage's milliseconds, then its parts' as `stage.part` (`recall.bm25`, `recall.dense`)."""
        out: dict[str, float] = {}
        for s in self.stages:
            out[s.name] = s.ms
            out.update({f"{s.name}.{part}": ms for part, ms in s.parts.items()})
        return out

    def explanation(self, doc_id: str) -> Explanation:
        """How the document's final score came about: a child per stage that saw it (its score and rank
        there), each with the scores that stage added for it (e.g. recall's retrievers) as children."""
        stages, before = [], set()
        for s in self.stages:
            added = [n for n in s.ranking.signals if n not in before and n != s.name]
            before |= set(s.ranking.signals)
            try:
                pos = s.ranking.ids.index(doc_id)
            except ValueError:
                continue
            children = [Explanation(float(s.ranking.signals[n][pos]), n) for n in added
                        if not np.isnan(s.ranking.signals[n][pos])]
            stages.append(Explanation(float(s.ranking.scores[pos]), s.name, pos + 1, children))
        final = self.ranking.ids.index(doc_id) if doc_id in self.ranking.ids else None
        score = float(self.ranking.scores[final]) if final is not None else float("nan")
        return Explanation(score, "final", None if final is None else final + 1, stages)

    def explain(self, doc_id: str) -> dict[str, Any]:
        """`explanation(doc_id)` as JSON, keyed by stage: `{"recall": {"score", "rank", "description",
        "children": [{"score", "description": "bm25"}, ...]}, "ltr": {...}}`."""
        return {node.description: node.to_dict() for node in self.explanation(doc_id).children}


@dataclass
class _Step:
    stage: Stage
    name: str
    depth: int
    keep: int | None


class Pipeline:
    """A planner and a list of stages; the first stage recalls, the others rerank."""

    def __init__(self, name: str, searcher: Searcher, planner: Planner, recall: RecallStage, steps: list[_Step],
                 notes: list[str]):
        self.name = name
        self.searcher = searcher
        self.planner = planner
        self.recall_stage = recall
        self.steps = steps
        self.notes = notes

    @property
    def lexical(self) -> bool:
        """True when recall is BM25 alone and nothing reranks (the keyword index can then count, sort
        and facet every match itself)."""
        return list(self.recall_stage.retrievers) == ["bm25"] and not self.steps

    @property
    def match(self) -> str | None:
        """The bm25 recall's matching strategy (None: the index's `[query] match`)."""
        return getattr(self.recall_stage.retrievers.get("bm25"), "match", None)

    def plan(self, query: str, filters: Sequence[Any] = ()) -> QueryPlan:
        plan = self.planner.plan(query, filters)
        plan.notes.extend(self.notes)
        return plan

    def run(self, plan: QueryPlan, k: int) -> PipelineRun:
        return self.run_many([plan], k)[0]

    def run_many(self, plans: Sequence[QueryPlan], k: int) -> list[PipelineRun]:
        """Every plan through every stage, each stage once for all plans (`rerank_many`: a batched stage
        scores every query's candidates in one pass); the result holds at least the top `k` (where found)."""
        t0 = time.perf_counter()
        parts: dict[str, float] = {}
        recalled = self.recall_stage.recall(plans, k, parts)
        ms = (time.perf_counter() - t0) * 1e3 / max(len(plans), 1)
        runs = []
        for plan, ranking in zip(plans, recalled):
            ranking = ranking.with_signal("recall", ranking.scores)
            runs.append(PipelineRun(plan, ranking, [StageRun("recall", ranking, ms, dict(parts))]))
        for step in self.steps:
            t1 = time.perf_counter()
            rankings = _apply(step, plans, [run.ranking for run in runs])
            ms = (time.perf_counter() - t1) * 1e3 / max(len(plans), 1)
            for run, ranking in zip(runs, rankings):
                run.ranking = ranking
                run.stages.append(StageRun(step.name, ranking, ms))
        for run in runs:
            run.ranking = run.ranking.top(max(k, 0))
        return runs

    def search(self, query: str, k: int, filters: Sequence[Any] | None = None) -> Ranking:
        """The top-k ranking for a query string (what evaluation runs)."""
        return self.run(self.plan(query, filters or ()), k).ranking


def _apply(step: _Step, plans: Sequence[QueryPlan], candidates: Sequence[Ranking]) -> list[Ranking]:
    """Rerank each list's head (`depth`) in one `rerank_many` call, keep the tail below it in its order,
    then cut to `keep`."""
    heads = [c.top(step.depth) for c in candidates]
    todo = [i for i, head in enumerate(heads) if len(head)]
    done = dict(zip(todo, rerank_many(step.stage, [plans[i] for i in todo], [heads[i] for i in todo]))) if todo else {}
    return [_merge(step, done[i], candidates[i].take(slice(step.depth, None))) if i in done else candidates[i]
            for i in range(len(candidates))]


def _merge(step: _Step, out: Ranking, tail: Ranking) -> Ranking:
    """A reranked head in the stage's order, its candidates' tail below it, cut to `keep`."""
    out = out.take(np.argsort(-np.asarray(out.scores, dtype=np.float64), kind="stable"))
    out = out.with_signal(step.name, out.scores)
    if len(tail):
        floor = float(np.min(out.scores)) if len(out) else 0.0
        tail_scores = floor - 1.0 - np.arange(1, len(tail) + 1, dtype=np.float32) * 1e-3
        tail = tail.take(slice(None), tail_scores).with_signal(step.name, np.full(len(tail), np.nan, dtype=np.float32))
        out = Ranking(out.ids + tail.ids, np.concatenate([out.scores, tail.scores]).astype(np.float32),
                      {n: np.concatenate([out.signal(n), tail.signal(n)])
                       for n in set(out.signals) | set(tail.signals)})
    return out.top(step.keep) if step.keep else out


def _scrub(message: str, index_path: Any) -> str:
    """A note for clients: the index directory's path left out."""
    from pathlib import Path

    for p in {str(index_path), str(Path(index_path).resolve())}:
        message = message.replace(p + "/", "").replace(p, "the index")
    return message


def pipeline_names(config: dict[str, Any] | None = None) -> list[str]:
    """Presets plus the pipelines an index config declares."""
    return sorted(set(PRESETS) | set(config or {}))


def stage_specs(name: str, config: dict[str, Any] | None = None,
                options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The stage list of pipeline `name`: its own `stages`, or a preset with the config's overrides."""
    table = dict((config or {}).get(name, {}))
    if not isinstance(table, dict):
        raise ConfigError(f"pipelines.{name}: expected a table, got {table!r}")
    table.update(options or {})
    table.pop("query", None)  # the pipeline's query steps, read by `query_steps_of`
    if "stages" in table:
        specs = table.pop("stages")
        if table:
            raise ConfigError(f"pipelines.{name}: with `stages`, put options inside each stage, not "
                              f"{sorted(table)[0]!r}")
        if not isinstance(specs, list) or not specs or not all(isinstance(s, dict) for s in specs):
            raise ConfigError(f"pipelines.{name}.stages: expected a non-empty list of tables like "
                              f"{{stage = \"recall\"}}")
        specs = copy.deepcopy(specs)
    elif name in PRESETS:
        specs = copy.deepcopy(PRESETS[name])
        by_stage = {s["stage"]: s for s in specs}
        for key, value in table.items():
            if isinstance(value, dict) and key in by_stage and key != "recall":
                by_stage[key].update(value)
            elif key == "recall" and isinstance(value, dict):
                specs[0].update(value)
            else:
                specs[0][key] = value
    else:
        known = ", ".join(pipeline_names(config))
        raise ConfigError(f"unknown pipeline {name!r}; known pipelines: {known}")
    for i, spec in enumerate(specs):
        if not isinstance(spec.get("stage"), str):
            raise ConfigError(f"pipelines.{name}.stages[{i}]: missing `stage = \"NAME\"`")
    if specs[0]["stage"] != "recall":
        raise ConfigError(f"pipelines.{name}.stages[0]: the first stage must be `recall`, got {specs[0]['stage']!r}")
    return specs


# Query steps the learned presets add to the index's `[query] steps`. Spelling was measured on train splits
# (`souk bench spell --split train`): homedepot 0.376 -> 0.394 nDCG@10, qbqtc 0.7932 -> 0.7942 (18 queries
# better, 1 worse), scifact unchanged (no rewrite); the raw presets (bm25, dense, hybrid) stay baselines.
PRESET_EXTRA_STEPS: dict[str, list[str]] = {"ltr": ["spell"], "rerank": ["spell"], "full": ["spell"]}
PRESET_STEPS: dict[str, list[str]] = {"bm25": ["syntax"]}  # the raw baseline keeps its steps whatever the index says


def query_steps_of(name: str, config: dict[str, Any] | None = None, options: dict[str, Any] | None = None,
                   index_steps: list[str] | None = None) -> list[str] | None:
    """The pipeline's own query steps (`[pipelines.NAME] query = [...]`; for learned presets the index's
    steps plus `PRESET_EXTRA_STEPS`), or None for the index's steps."""
    table = {**dict((config or {}).get(name, {})), **(options or {})}
    steps = table.get("query")
    if steps is None and name in PRESET_STEPS and "stages" not in table:
        steps = list(PRESET_STEPS[name])
    if steps is None and name in PRESET_EXTRA_STEPS and "stages" not in table:
        base = list(index_steps or ["syntax"])
        steps = base + [s for s in PRESET_EXTRA_STEPS[name] if s not in base]
    if steps is not None and (not isinstance(steps, list) or not all(isinstance(x, str) for x in steps)):
        raise ConfigError(f"pipelines.{name}.query: expected a list of query steps, got {steps!r}")
    return steps


def build_pipeline(name: str, index_or_searcher: Any, options: dict[str, Any] | None = None,
                   planner: Planner | None = None) -> Pipeline:
    """Pipeline `name` over an Index (a fresh snapshot is taken) or a Searcher; `options` override the
    config's table for this pipeline."""
    searcher = index_or_searcher.searcher() if hasattr(index_or_searcher, "writer") else index_or_searcher
    specs = stage_specs(name, searcher.schema.pipelines, options)
    context = StageContext(searcher)
    recall_opts = {k: v for k, v in specs[0].items() if k != "stage"}
    recall = RecallStage(context, recall_opts, where=f"pipelines.{name}.stages[0]")
    notes = list(recall.notes)
    steps = []
    for i, spec in enumerate(specs[1:], 1):
        where = f"pipelines.{name}.stages[{i}]"
        stage_name = spec["stage"]
        step = parse_options(where, {k: spec[k] for k in ("depth", "keep", "optional") if k in spec}, StepOptions)
        depth, keep, optional = step.depth, step.keep, step.optional
        opts = {k: v for k, v in spec.items() if k not in PIPELINE_KEYS}
        try:
            stage = STAGES.get(stage_name)(context, opts)
        except (Unavailable, ModelError) as e:  # not fitted, or a model that fails its checks (ModelUnavailable)
            if not optional:
                raise
            notes.append(f"stage {stage_name} skipped: {_scrub(str(e), searcher.path)}")
            continue
        except ConfigError as e:
            raise ConfigError(f"{where} ({stage_name}): {e}") from e
        steps.append(_Step(stage, stage_name, depth, keep))
    if planner is None:
        from souk.query.understand import planner_for

        index_steps = searcher.schema.query.get("steps")
        planner = planner_for(searcher, query_steps_of(name, searcher.schema.pipelines, options, index_steps))
    return Pipeline(name, searcher, planner, recall, steps, notes)
