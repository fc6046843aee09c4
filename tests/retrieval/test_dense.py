import json

import pytest

from souk.errors import ConfigError
from souk.evaluation.datasets import load_beir
from souk.evaluation.metrics import score_run
from souk.index import Index
from souk.index.filters import parse_filter
from souk.query.plan import QueryPlan
from souk.ranking.pipeline import build_pipeline
from souk.retrieval.dense import DenseRetriever
from model_fakes import vector_index
from support import DATA, FIXTURES, needs_shared, run_main

N = 200


@pytest.fixture(scope="module")
def slice_dir(tmp_path_factory):
    """SciFact dev queries over a 200-doc corpus: every judged doc plus the first unjudged ones (MiniLM)."""
    src, dst = DATA / "scifact", tmp_path_factory.mktemp("scifact200")
    (dst / "qrels").mkdir()
    qrels = (src / "qrels" / "dev.tsv").read_text()
    (dst / "qrels" / "dev.tsv").write_text(qrels)
    judged = {line.split("\t")[1] for line in qrels.splitlines()[1:]}
    docs = [json.loads(line) for line in (src / "corpus.jsonl").open()]
    keep = [d for d in docs if d["_id"] in judged]
    keep += [d for d in docs if d["_id"] not in judged][: N - len(keep)]
    (dst / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in keep))
    (dst / "queries.jsonl").write_text((src / "queries.jsonl").read_text())
    return dst


@pytest.fixture(scope="module")
def searcher(slice_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("dense") / "index"
    run_main("index", str(slice_dir), "--index", str(path), "--vectors")
    return Index.open(path).searcher()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, tiny_encoder):
    """40 synthetic documents (English and Chinese words) with vectors of the tiny random encoder."""
    return vector_index(tmp_path_factory.mktemp("tiny"), tiny_encoder, 40).searcher()


def ndcg(pipeline, data) -> float:
    run = {qid: pipeline.search(text, 10).pairs() for qid, text in data.queries.items()}
    return score_run(run, data.qrels, ["ndcg@10"]).means()["ndcg@10"]


@pytest.mark.slow
@needs_shared("data", "scifact")
def test_dense_and_hybrid_recall_on_a_scifact_slice(slice_dir, searcher):
    data = load_beir(slice_dir, "dev")
    scores = {name: ndcg(build_pipeline(name, searcher), data) for name in ("bm25", "dense", "hybrid")}
    assert scores["dense"] >= 0.75, scores
    assert scores["hybrid"] >= max(scores["dense"], scores["bm25"] - 0.02), scores


def test_filters_apply_to_both_retrievers(tiny):
    allowed = tiny.ids()[:7]
    filters = [parse_filter("_id=" + "|".join(allowed), tiny.schema)]
    for name in ("dense", "hybrid"):
        ranking = build_pipeline(name, tiny).search("solar panels and green tea", 5, filters)
        assert 0 < len(ranking) <= 5 and set(ranking.ids) <= set(allowed), name
    hybrid = build_pipeline("hybrid", tiny).recall_stage
    plan = QueryPlan("solar", "solar", filters=filters)
    bm25, dense = (r.retrieve([plan], 50)[0] for r in hybrid.retrievers.values())
    assert set(bm25.ids) <= set(allowed) and set(dense.ids) == set(allowed)


def test_batched_queries_match_single_queries(tiny):
    dense = DenseRetriever(tiny)
    queries = ["solar panels on rooftops", "espresso machines and coffee", ""]
    many = dense.retrieve([QueryPlan(q, q) for q in queries], 5)
    assert [r.ids for r in many] == [dense.retrieve([QueryPlan(q, q)], 5)[0].ids for q in queries]
    assert len(many[-1]) == 0, "an empty query finds nothing"


def test_k_hits_come_back_and_a_blank_query_finds_nothing(tiny):
    dense = DenseRetriever(tiny)
    assert len(dense.retrieve([QueryPlan("wind turbines", "wind turbines")], 20)[0]) == 20
    assert len(build_pipeline("dense", tiny).search("", 10)) == 0
    assert len(build_pipeline("dense", tiny).search("   ", 10)) == 0


@pytest.mark.parametrize("options, key", [
    ({"fusoin": "rrf"}, "fusoin"), ({"fusion": "borda"}, "fusion"), ({"norm": "rank"}, "norm"),
    ({"weights": {"bm25": 1.0, "colbert": 1.0}}, "colbert"), ({"depth": -1}, "depth"), ({"rrf_k": "sixty"}, "rrf_k"),
    ({"field": "vectors"}, "field"),
])
def test_hybrid_options_are_checked(tiny, options, key):
    with pytest.raises(ConfigError, match=key):
        build_pipeline("hybrid", tiny, options)


def test_hybrid_options_take_effect(tiny):
    pipe = build_pipeline("hybrid", tiny,
                          {"fusion": "rrf", "rrf_k": 10, "weights": {"dense": 0.0}, "depth": {"bm25": 20}})
    p = pipe.recall_stage
    assert (p.fusion, p.rrf_k, p.weights["dense"], p.depth["bm25"]) == ("rrf", 10.0, 0.0, 20)
    q = "solar electricity"
    assert pipe.search(q, 10).ids == p.retrievers["bm25"].retrieve([QueryPlan(q, q)], 20)[0].ids[:10]


def test_dense_on_an_index_without_vectors_says_how_to_add_them(tmp_path):
    path = tmp_path / "index"
    run_main("index", str(FIXTURES / "beir-mini"), "--index", str(path))
    with pytest.raises(ConfigError, match="--vectors"):
        build_pipeline("dense", Index.open(path))
    again = run_main("index", str(FIXTURES / "beir-mini"), "--index", str(path), "--vectors", check=False)
    assert again.returncode == 2 and "without a vector field" in again.stderr and "Traceback" not in again.stderr


def test_hybrid_gives_an_english_encoder_no_say_on_chinese_queries(tmp_path, tiny_english_encoder):
    searcher = vector_index(tmp_path, tiny_english_encoder, 40).searcher()
    pipe = build_pipeline("hybrid", searcher)
    p = pipe.recall_stage
    weight = lambda q: p.query_weights(QueryPlan(q, q))["dense"]  # noqa: E731
    assert weight("phone case") == pytest.approx(p.weights["dense"])
    assert weight("手机壳") == 0.0
    assert 0 < weight("iPhone 手机壳") < p.weights["dense"]
    bm25 = build_pipeline("bm25", searcher)
    assert pipe.search("手机壳", 10).ids == bm25.search("手机壳", 10).ids != []
    assert pipe.search("iPhone 手机壳", 10).ids != bm25.search("iPhone 手机壳", 10).ids  # the dense list has a say here
