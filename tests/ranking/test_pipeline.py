"""Pipelines as configuration, shown with an in-process fake retriever and a fake stage: a newcomer
adds either by writing one class and registering it."""
from __future__ import annotations

import numpy as np
import pytest

from souk.errors import ConfigError
from souk.index import Index
from souk.ranking.pipeline import build_pipeline, stage_specs
from souk.errors import Unavailable as StageUnavailable
from souk.ranking.stage import STAGES
from souk.retrieval.base import RETRIEVERS
from souk.types import Ranking


class AlphabetRetriever:
    """Fake retriever: every document whose id sorts before 'B', scored by reverse id order."""

    name = "alphabet"

    def __init__(self, searcher):
        self.ids = sorted(searcher.ids())

    def retrieve(self, plans, k):
        out = []
        for plan in plans:
            ids = [i for i in self.ids if i < "B"][:k]
            out.append(Ranking(ids, np.arange(len(ids), 0, -1).astype(np.float32)))
        return out

    def coverage(self, plan):
        return 1.0


class ReverseStage:
    """Fake stage: scores the candidates it is given in reverse order."""

    name = "reverse"

    def rerank(self, plan, candidates):
        return candidates.take(slice(None), np.arange(len(candidates), dtype=np.float32))


class LatinOnlyRetriever(AlphabetRetriever):
    """Fake retriever whose model reads Latin script only (like the bundled MiniLM)."""

    def coverage(self, plan):
        return 0.0 if any("\u4e00" <= c <= "\u9fff" for c in plan.text) else 1.0


def _never(context, options):
    raise StageUnavailable("no model fitted; run souk fit")


@pytest.fixture(autouse=True)
def fakes():
    """The fakes are registered for each test of this module only (`override`), then gone."""
    with RETRIEVERS.override("alphabet", lambda searcher, options: AlphabetRetriever(searcher)), \
            RETRIEVERS.override("latin-only", lambda searcher, options: LatinOnlyRetriever(searcher)), \
            STAGES.override("reverse", lambda context, options: ReverseStage()), \
            STAGES.override("never-fitted", _never), \
            STAGES.override("batched", lambda context, options: BatchedStage()):
        yield


def test_fake_retriever_and_stage_compose_from_config(product_index):
    searcher = Index.open(product_index).searcher()
    options = {"stages": [{"stage": "recall", "retrievers": ["alphabet"]}, {"stage": "reverse", "depth": 2}]}
    pipe = build_pipeline("mine", searcher, options)
    run = pipe.run(pipe.plan("anything"), 50)
    recalled = [i for i in sorted(searcher.ids()) if i < "B"]
    assert run.ranking.ids == recalled[:2][::-1] + recalled[2:]
    assert list(run.timings_ms) == ["recall", "reverse"]
    assert np.all(np.diff(run.ranking.scores) < 0), "scores must stay in ranking order (run files sort by score)"
    top = run.ranking.ids[0]
    assert run.explain(top)["reverse"]["rank"] == 1 and run.explain(top)["recall"]["rank"] == 2
    recall = run.explain(top)["recall"]  # a tree per stage: the retrievers' scores are recall's children
    assert recall["children"] == [{"score": pytest.approx(float(len(recalled) - 1)), "description": "alphabet"}]
    tree = run.explanation(top)
    assert [s.description for s in tree.children] == ["recall", "reverse"] and tree.rank == 1


def test_keep_cuts_and_optional_stage_is_skipped_with_a_note(product_index):
    searcher = Index.open(product_index).searcher()
    options = {"stages": [{"stage": "recall", "retrievers": ["alphabet"]}, {"stage": "never-fitted", "optional": True},
                          {"stage": "reverse", "depth": 3, "keep": 2}]}
    pipe = build_pipeline("mine", searcher, options)
    plan = pipe.plan("x")
    assert pipe.run(plan, 10).ranking.ids and len(pipe.run(plan, 10).ranking) == 2
    assert any("never-fitted skipped" in n for n in plan.notes)
    with pytest.raises(StageUnavailable, match="souk fit"):
        build_pipeline("mine", searcher, {"stages": [{"stage": "recall"}, {"stage": "never-fitted"}]})


def test_bm25_preset_is_the_keyword_ranking(product_index):
    searcher = Index.open(product_index).searcher()
    from souk.index.searcher import SearchRequest

    keyword = [h.id for h in searcher.search(SearchRequest(query="iphone case", k=5)).hits]
    assert build_pipeline("bm25", searcher).search("iphone case", 5).ids == keyword
    assert build_pipeline("keyword", searcher).search("iphone case", 5).ids == keyword


@pytest.mark.parametrize("config, message", [
    ({"hybird": {}}, "unknown pipeline 'hybird'"),
    ({"mine": {"stages": []}}, "pipelines.mine.stages: expected a non-empty list"),
    ({"mine": {"stages": [{"stage": "reverse"}]}}, "first stage must be `recall`"),
    ({"mine": {"stages": [{"retrievers": ["bm25"]}]}}, r"stages\[0\]: missing `stage"),
])
def test_bad_pipeline_tables_name_the_key(config, message):
    name = next(iter(config))
    with pytest.raises(ConfigError, match=message):
        stage_specs(name, config if name != "hybird" else {})


def test_stage_options_are_checked_with_the_key(product_index):
    searcher = Index.open(product_index).searcher()
    with pytest.raises(ConfigError, match=r"pipelines.bm25.stages\[0\]: unknown key 'fusoin'"):
        build_pipeline("bm25", searcher, {"fusoin": "rrf"})
    with pytest.raises(ConfigError, match=r"stages\[1\].depth: expected a positive integer"):
        build_pipeline("mine", searcher, {"stages": [{"stage": "recall"}, {"stage": "reverse", "depth": 0}]})


def test_a_retriever_that_cannot_read_the_query_is_left_out_and_the_plan_says_so(product_index):
    searcher = Index.open(product_index).searcher()
    alone = build_pipeline("mine", searcher, {"stages": [{"stage": "recall", "retrievers": ["latin-only"]}]})
    plan = alone.plan("跑步鞋")
    assert len(alone.run(plan, 10).ranking) == 0  # nothing pretended
    assert plan.notes == ["retriever latin-only left out: its model cannot read this query"]
    fused = build_pipeline("mine", searcher, {"stages": [{"stage": "recall", "retrievers": ["bm25", "latin-only"]}]})
    plan = fused.plan("跑步鞋")
    assert fused.run(plan, 10).ranking.ids == searcher.bm25("跑步鞋", 10).ids  # BM25 alone decides
    assert any("latin-only left out" in n for n in plan.notes)
    english = fused.plan("running shoes")
    fused.run(english, 10)
    assert not english.notes


class BatchedStage(ReverseStage):
    """Fake batched stage: one `rerank_many` call per pipeline step, whatever the number of queries."""

    name = "batched"
    calls: list[int] = []

    def rerank_many(self, plans, candidates):
        BatchedStage.calls.append(len(plans))
        return [self.rerank(p, c) for p, c in zip(plans, candidates)]


def test_run_many_hands_every_query_to_a_stage_at_once(product_index):
    searcher = Index.open(product_index).searcher()
    stages = [{"stage": "recall", "retrievers": ["alphabet"]}, {"stage": "batched", "depth": 2},
              {"stage": "reverse", "depth": 3}]
    pipe = build_pipeline("mine", searcher, {"stages": stages})
    plans = [pipe.plan(q) for q in ("one", "two", "three")]
    BatchedStage.calls.clear()
    runs = pipe.run_many(plans, 10)
    assert BatchedStage.calls == [3]  # one call for three queries; `reverse` (no rerank_many) loops over rerank
    assert [r.ranking.ids for r in runs] == [pipe.run(p, 10).ranking.ids for p in plans]
    assert [list(r.timings_ms) for r in runs] == [["recall", "batched", "reverse"]] * 3


class SlowRetriever(AlphabetRetriever):
    """Fake retriever that takes a known least time per call."""

    def retrieve(self, plans, k):
        import time

        time.sleep(0.02)
        return super().retrieve(plans, k)


def test_recall_times_each_of_several_retrievers(product_index):
    searcher = Index.open(product_index).searcher()
    with RETRIEVERS.override("slow", lambda searcher, options: SlowRetriever(searcher)):
        pipe = build_pipeline("mine", searcher, {"stages": [{"stage": "recall", "retrievers": ["alphabet", "slow"]},
                                                            {"stage": "reverse", "depth": 2}]})
        timings = pipe.run(pipe.plan("anything"), 10).timings_ms
    assert list(timings) == ["recall", "recall.alphabet", "recall.slow", "reverse"]
    assert timings["recall.slow"] >= 20 and timings["recall"] >= timings["recall.slow"] + timings["recall.alphabet"]
    single = build_pipeline("one", searcher, {"stages": [{"stage": "recall", "retrievers": ["alphabet"]}]})
    assert list(single.run(single.plan("anything"), 10).timings_ms) == ["recall"]  # one retriever: recall is its time
