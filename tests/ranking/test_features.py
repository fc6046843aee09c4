"""Ranking features against hand computations on a four-document index."""
from __future__ import annotations

import math

import numpy as np
import pytest

from souk.catalogs import Record
from souk.errors import ModelError, SchemaError
from souk.index import Index
from souk.index.searcher import SearchRequest
from souk.query.plan import QueryPlan
from souk.ranking.features import FEATURE_GROUPS, FeatureEnv, FeatureGroup, FeatureSet, rank_desc
from souk.schema import Schema
from souk.types import Ranking

DOCS = [
    {"id": "d1", "title": "Red apple pie", "body": "a sweet red apple pie with cream", "price": 10.0},
    {"id": "d2", "title": "Apple", "body": "pie made from one apple", "price": 2.0},
    {"id": "d3", "title": "Pie crust", "body": "crust for any pie"},
    {"id": "d4", "title": "Apple pie", "body": "grandma bakes it", "price": 7.0},
]
SCHEMA = {"id": "id", "fields": {"id": {"kind": "keyword"}, "title": {"kind": "text"}, "body": {"kind": "text"},
                                 "price": {"kind": "number", "feature": True}}}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    path = tmp_path_factory.mktemp("features") / "index"
    index = Index.create(path, Schema.from_dict(SCHEMA))
    with index.writer() as w:
        w.add([Record(i + 1, d) for i, d in enumerate(DOCS)])
        w.commit()
    return FeatureEnv.open(index.searcher())


def features(env, query, ids=("d1", "d2", "d3", "d4"), signals=None):
    fs = FeatureSet(env, ["text", "signal", "number", "query"])
    ranking = Ranking(list(ids), np.zeros(len(ids), np.float32), signals or {})
    X = fs.matrix(QueryPlan(query, query), ranking)
    return {name: X[:, i] for i, name in enumerate(fs.columns)}


def bm25(tf, length, avg, df, n=4):
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
    return idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * length / avg))


def test_title_features_by_hand(env):
    f = features(env, "apple pie")  # analyzed: appl, pie
    # title terms: d1 [red appl pie], d2 [appl], d3 [pie crust], d4 [appl pie]; avg length 2, df 3 each
    assert f["text.title.len"].tolist() == [3, 1, 2, 2]
    expect = [bm25(1, 3, 2, 3) * 2, bm25(1, 1, 2, 3), bm25(1, 2, 2, 3), bm25(1, 2, 2, 3) * 2]
    assert f["text.title.bm25"] == pytest.approx(expect, rel=1e-5)
    assert f["text.title.bm25_rank"].tolist() == [2, 3, 4, 1]
    assert f["text.title.cover"].tolist() == [1, 0.5, 0.5, 1]
    assert f["text.title.bigram"].tolist() == [1, 0, 0, 1]
    assert f["text.title.phrase"].tolist() == [1, 0, 0, 1]
    assert f["text.title.equals"].tolist() == [0, 0, 0, 1]
    assert f["text.title.first"].tolist() == [1, 0, 0, 0]
    assert f["text.title.span"][[0, 3]].tolist() == [1, 1] and np.isnan(f["text.title.span"][[1, 2]]).all()
    assert f["text.title.dcover"] == pytest.approx([2 / 3, 1, 1 / 2, 1])
    assert f["text.title.last"].tolist() == [1, 0, 1, 1]  # holds "pie", the query's last word


def test_misspelt_words_count_as_fuzzy_cover(env):
    f = features(env, "crusst pie")  # "crusst" is no term; "crust" is near it
    assert f["text.title.cover"].tolist() == [0.5, 0, 1 / 2, 0.5]
    assert f["text.title.fuzzy"].tolist() == [0.5, 0, 1, 0.5]


def test_body_span_order_and_unknown_terms(env):
    f = features(env, "apple pie")
    # body terms (stopwords gone): d1 [sweet red appl pie cream], d2 [pie made one appl],
    # d3 [crust pie], d4 [grandma bake]
    assert f["text.body.first"][:3].tolist() == [2, 0, 1] and np.isnan(f["text.body.first"][3])
    assert f["text.body.span"][0] == 1.0 and f["text.body.span"][1] == 2.0  # pie .. appl: 4 terms for 2
    assert f["text.body.bigram"][:2].tolist() == [1, 0]  # d2 has both words, not in query order
    g = features(env, "apple zzzunknown")  # a word no document holds counts as asked for and never matches
    assert g["text.title.cover"].tolist() == [0.5, 0.5, 0, 0.5]
    assert g["query.terms"].tolist() == [2] * 4


def test_bm25_agrees_with_tantivy_on_one_field(env):
    f = features(env, "apple pie")
    hits = env.searcher.search(SearchRequest("apple pie", k=10, fields=["title"], highlight=False, match="any")).hits
    tantivy = {h.id: h.score for h in hits}
    for i, doc in enumerate(["d1", "d2", "d3", "d4"]):
        assert f["text.title.bm25"][i] == pytest.approx(tantivy[doc], rel=1e-3)


def test_signals_numbers_and_unknown_candidates(env):
    signals = {"dense": np.asarray([0.2, np.nan, 0.9], np.float32), "recall": np.asarray([3, 2, 1], np.float32)}
    f = features(env, "apple", ids=("d1", "d3", "gone"), signals=signals)
    assert f["signal.dense_rank"][[0, 2]].tolist() == [2, 1] and np.isnan(f["signal.dense_rank"][1])
    assert np.isnan(f["signal.bm25"]).all()  # no stage produced it
    assert f["number.price.log"][0] == pytest.approx(math.log1p(10.0))
    assert np.isnan(f["number.price.log"][1:]).all()  # d3 has no price; "gone" is not in the index
    assert f["text.title.len"][2] == 0 and f["text.title.bm25"][2] == 0
    assert rank_desc(np.asarray([1.0, 3.0, 3.0, np.nan])).tolist()[:3] == [3, 1, 1]


def test_a_model_refuses_other_features(env):
    fs = FeatureSet(env, ["text", "signal"])
    fs.check(fs.spec)
    with pytest.raises(ModelError, match="column 0 is 'text.name.bm25' there and 'text.title.bm25' here"):
        fs.check({**fs.spec, "names": ["text.name.bm25", *fs.spec["names"][1:]]}, model="ltr-1")
    with pytest.raises(ModelError, match="trained with feature groups"):
        fs.check({**fs.spec, "groups": {"text": 2, "signal": 1}})

    def _tiny(env, batch):  # a query-plan feature plugs in by name
        return np.full(len(batch), len(batch.plan.entities), dtype=np.float32)

    tiny = FeatureGroup("plan.tiny", 1, lambda env: ["plan.tiny.len"], _tiny, lambda env: False)
    with FEATURE_GROUPS.override("plan.tiny", tiny):
        assert FeatureSet(env, ["query", "plan.tiny"]).columns == ["query.terms", "query.chars", "plan.tiny.len"]
    assert "plan.tiny" not in FEATURE_GROUPS


def test_schema_feature_flag_only_on_numbers():
    assert Schema.from_dict(SCHEMA).fields["price"].feature
    with pytest.raises(SchemaError, match="only number fields"):
        Schema.from_dict({"id": "id", "fields": {"id": {"kind": "keyword"}, "t": {"kind": "text", "feature": True}}})


def test_a_field_copying_two_sources_adds_up_its_parts(tmp_path):
    from souk.catalogs import read_catalog
    from souk.ranking.pipeline import build_pipeline
    from souk.schema import beir_schema
    from support import FIXTURES

    index = Index.create(tmp_path / "beir", beir_schema())
    with index.writer() as w:
        w.add(read_catalog(FIXTURES / "beir-mini" / "corpus.jsonl"))
        w.commit()
    env = FeatureEnv.open(index.searcher())
    fs = FeatureSet(env, ["text", "signal"])
    assert list(env.terms.units) == ["all", "title", "text"]
    assert [c for c in fs.columns if c.startswith("text.all.")] == [
        f"text.all.{c}" for c in ("bm25", "bm25_rank", "cover", "idf_cover", "len")
    ]
    pipe = build_pipeline("bm25", index.searcher())
    run = pipe.run(pipe.plan("solar panels electricity"), 10)
    X = fs.matrix(run.plan, run.ranking)
    col = {c: X[:, i] for i, c in enumerate(fs.columns)}
    assert col["text.all.bm25"] == pytest.approx(col["signal.bm25"], rel=0.02)  # tantivy's BM25 over `all`
    assert col["text.all.len"].tolist() == (col["text.title.len"] + col["text.text.len"]).tolist()
