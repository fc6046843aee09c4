import numpy as np
import pytest

from souk.errors import Unavailable
from souk.evaluation.datasets import load_beir
from souk.index import Index
from souk.index.filters import Filters, parse_filter
from souk.query.plan import QueryPlan
from souk.ranking.pipeline import build_pipeline
from souk.retrieval.base import RETRIEVERS
from souk.retrieval.wordvec import WordVecRetriever
from zh_mini import FIXTURE, build_index, copy_of_fitted, fitted_index


@pytest.fixture(scope="module")
def searcher():
    return Index.open(fitted_index()).searcher()


def plan(text: str, filters=()) -> QueryPlan:
    return QueryPlan(original=text, text=text, filters=list(filters))


def test_relevant_titles_rank_far_above_chance(searcher):
    retriever = RETRIEVERS.get("wordvec")(searcher, {})
    data = {**load_beir(FIXTURE, "train").qrels, **load_beir(FIXTURE, "dev").qrels}
    queries = {**load_beir(FIXTURE, "train").queries, **load_beir(FIXTURE, "dev").queries}
    rankings = retriever.retrieve([plan(queries[q]) for q in data], 10)
    hits = [bool(set(r.ids) & set(data[q])) for q, r in zip(data, rankings)]
    assert np.mean(hits) >= 0.7, hits  # chance: 10 of 50 titles = 0.2
    assert all(len(r) == 10 and np.all(np.diff(r.scores) <= 1e-6) for r in rankings)


def test_filters_are_honoured(searcher):
    allowed = ["d0", "d1", "d20", "d33"]
    flt = [parse_filter("_id=" + "|".join(allowed), searcher.schema)]
    retriever = RETRIEVERS.get("wordvec")(searcher, {})
    found = retriever.retrieve([plan("小孩感冒吃什么药", flt), plan("红烧肉")], 3)
    assert 0 < len(found[0]) <= 3 and set(found[0].ids) <= set(allowed)
    assert found[0].ids[0] == "d0"
    assert found[1].ids[0] not in allowed or found[1].ids[0] == "d20"


def test_coverage_similarity_and_empty_queries(searcher):
    retriever = RETRIEVERS.get("wordvec")(searcher, {})
    assert retriever.coverage(plan("手机电池")) == 1.0
    assert retriever.coverage(plan("xyzzyplugh")) == 0.0
    assert retriever.retrieve([plan(""), plan("xyzzyplugh")], 5)[0].ids == []
    assert retriever.retrieve([plan("xyzzyplugh")], 5)[0].ids == []  # nothing known: no guess
    top = retriever.retrieve([plan("华为手机截屏")], 5)[0]
    sims = retriever.similarity(plan("华为手机截屏"), [*top.ids, "no-such-doc"])
    assert np.allclose(sims[:-1], top.scores, atol=1e-4) and np.isnan(sims[-1])


LEARNED = {"stages": [{"stage": "recall", "retrievers": ["bm25", "dense?", "wordvec?"]}]}  # full's recall


def test_learned_recall_fuses_wordvec_with_bm25(searcher):
    pipe = build_pipeline("full", searcher, LEARNED)
    assert "wordvec" in pipe.recall_stage.retrievers
    assert pipe.recall_stage.weights["wordvec"] == RETRIEVERS.get("wordvec")(searcher, {}).default_weight
    run = pipe.run(pipe.plan("宝宝有痰怎么办"), 10)
    assert "wordvec" in run.ranking.signals and "bm25" in run.ranking.signals
    assert "d2" in run.ranking.ids[:3]


def test_unfitted_index_leaves_wordvec_out(tmp_path):
    searcher = build_index(tmp_path / "plain").searcher()
    with pytest.raises(Unavailable, match="no fitted wordvec model"):
        WordVecRetriever(searcher)
    pipe = build_pipeline("full", searcher, LEARNED)
    assert list(pipe.recall_stage.retrievers) == ["bm25"]
    assert any("wordvec left out" in n for n in pipe.notes)


def test_a_new_commit_gets_its_own_cached_view(tmp_path):
    path = copy_of_fitted(tmp_path)
    index = Index.open(path)
    with index.writer() as writer:
        from souk.catalogs import Record

        writer.add([Record(1, {"_id": "new1", "title": "", "text": "华为手机截屏的三种方法"})])
        writer.delete(["d11"])
        writer.commit()
    searcher = Index.open(path).searcher()
    found = RETRIEVERS.get("wordvec")(searcher, {}).retrieve([plan("华为手机截屏")], 5)[0]
    assert found.ids[0] == "new1" and "d11" not in found.ids
    cached = list((path / "cache" / "wordvec").glob("*/*/view.json"))
    assert len(cached) == 1 and searcher.commit_id in str(cached[0])


def test_small_batches_in_numpy_agree_with_faiss(searcher):
    retriever = RETRIEVERS.get("wordvec")(searcher, {})
    vectors = retriever.encode([plan("手机截屏"), plan("西湖一日游")])
    allowed = Filters.of(searcher, [parse_filter("_id=d11|d12|d16|d32|d33", searcher.schema)])
    for keys in (None, allowed):
        got_keys, got_scores = retriever.search(vectors, 4, keys)
        want_keys, want_scores = retriever.view.index.search(vectors, 4, keys)
        assert np.array_equal(got_keys, want_keys) and np.allclose(got_scores, want_scores, atol=1e-5)
