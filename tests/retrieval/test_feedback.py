"""Pseudo-relevance feedback for the query vector (`souk.retrieval.feedback`) on a tiny random encoder, and the
`dense` fitter that chooses its weight (`souk.training.prf`)."""

import json

import numpy as np
import pytest

from model_fakes import vector_index
from souk.errors import ConfigError
from souk.evaluation.datasets import Dataset
from souk.index.filters import parse_filter
from souk.models.store import ModelStore
from souk.query.plan import QueryPlan
from souk.retrieval.dense import DenseRetriever, _dense
from souk.retrieval.feedback import Feedback, agreeing, fitted_feedback, moved
from souk.types import Ranking


@pytest.fixture(scope="module")
def index(tiny_encoder, tmp_path_factory):
    return vector_index(tmp_path_factory.mktemp("prf"), tiny_encoder, 40)


def _texts(searcher, n):
    return [d["text"] for d in searcher.docs([f"doc{i}" for i in range(n)])]


def test_agreeing_documents_and_the_moved_vector():
    lexical = Ranking(["a", "b", "c", "d"], np.ones(4, np.float32))
    dense = Ranking(["c", "x", "a", "y"], np.ones(4, np.float32))
    assert agreeing(lexical, dense, Feedback(1.0, lexical=3, agree=3)) == ["a", "c"]  # BM25's order
    assert agreeing(lexical, dense, Feedback(1.0, lexical=1, agree=2)) == []
    q, docs = np.array([1.0, 0.0]), np.array([[0.0, 1.0], [0.0, 3.0]])
    assert moved(q, docs, 0.5).tolist() == [1.0, 1.0]


def test_weight_zero_is_the_plain_search_and_feedback_moves_the_list(index):
    searcher = index.searcher()
    plans = [QueryPlan(t, t) for t in _texts(searcher, 8)]
    plain = DenseRetriever(searcher, feedback=Feedback()).retrieve(plans, 10)
    assert [r.ids for r in _dense(searcher, {"prf": 0.0}).retrieve(plans, 10)] == [r.ids for r in plain]
    fed = _dense(searcher, {"prf": 5.0, "prf_lexical": 5, "prf_agree": 20}).retrieve(plans, 10)
    assert all(len(r) == 10 and len(set(r.ids)) == 10 for r in fed)
    assert [r.ids for r in fed] != [r.ids for r in plain]
    assert all(np.all(np.diff(r.scores) <= 1e-6) for r in fed)  # cosines to the moved query, best first


def test_feedback_honours_filters(index):
    searcher = index.searcher()
    text = _texts(searcher, 1)[0]
    plan = QueryPlan(text, text, filters=[parse_filter("_id=doc3", searcher.schema)])
    [r] = _dense(searcher, {"prf": 2.0}).retrieve([plan], 5)
    assert r.ids == ["doc3"]


def test_prf_options_are_checked(index):
    with pytest.raises(ConfigError, match="retrievers.dense.prf: expected a weight from 0 to 100"):
        _dense(index.searcher(), {"prf": -1.0})


@pytest.mark.slow
def test_the_dense_fitter_publishes_its_weight_and_off_sets_it_aside(index):
    from souk.training.fit import fit

    searcher = index.searcher()
    texts = _texts(searcher, 30)
    data = Dataset({f"q{i}": " ".join(t.split()[:3]) for i, t in enumerate(texts)},
                   {f"q{i}": {f"doc{i}": 1} for i in range(30)}, 0, "tiny", "train")
    [out] = fit(index.path, data, None, ["dense"], budget_s=120,
                options={"dense": {"prf": True, "weights": [0.5], "min_gain": -1.0}})
    assert out.manifest["active"] and out.manifest["prf"]["weight"] == 0.5
    assert set(out.manifest["train"]["hybrid_ndcg@10_by_weight"]) == {"0", "0.5"}
    assert fitted_feedback(index.searcher()) == Feedback(0.5, 5, 20)
    assert DenseRetriever(index.searcher()).feedback.weight == 0.5
    [off] = fit(index.path, data, None, ["dense"], budget_s=60, options={"dense": {"prf": False}})
    assert off.model is None and ModelStore(index.path).active("dense") is None  # nothing published
    assert off.manifest["retired"] == out.model  # the feedback fitted before is off with the option
    assert fitted_feedback(index.searcher()) == Feedback()


def test_a_damaged_dense_model_means_no_feedback(index, tmp_path):
    store = ModelStore(index.path)
    work = store.new("dense")
    path = store.publish("dense", work, {"kind": "dense-prf", "prf": {"weight": 1.0, "lexical": 5, "agree": 20}})
    assert fitted_feedback(index.searcher()).weight == 1.0
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["prf"] = {"weight": "lots"}
    (path / "manifest.json").write_text(json.dumps(manifest))
    assert fitted_feedback(index.searcher()) == Feedback()
    store.deactivate("dense")
