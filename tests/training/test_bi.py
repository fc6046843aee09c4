"""Fitter `bi` on a tiny random BERT: it learns beyond the starting encoder, the corpus is re-encoded with
the published model in one commit, searches then encode queries with it, and a failed re-encoding leaves
the index and the active models as they were."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")

from souk.errors import ConfigError  # noqa: E402
from souk.evaluation.datasets import load_beir  # noqa: E402
from souk.index import Index  # noqa: E402
from souk.models.store import ModelStore  # noqa: E402
from souk.training import bi  # noqa: E402
from souk.training.fit import activate_model, fit  # noqa: E402
from tiny_bert import collection_texts, pipelines_schema, tiny_bert, topic_collection  # noqa: E402

OPTIONS = {"weak_pairs": 64, "queries_per_batch": 16, "lr": 1e-3, "epochs": 6, "evals": 6, "patience": 6,
           "doc_length": 32, "query_length": 8, "pool": 20, "temperature": 0.1}


def vector_schema(base) -> dict:
    data = pipelines_schema()
    data["fields"]["embedding"] = {"kind": "vector", "params": {"source": ["title", "text"], "model": str(base),
                                                                "backend": "torch-fp32", "max_length": 32}}
    data["pipelines"]["hybrid"] = {"retrievers": ["bm25", "dense"]}
    return data


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    from souk.catalogs import read_catalog
    from souk.schema import Schema

    root = tmp_path_factory.mktemp("bi")
    coll = topic_collection(root / "beir", topics=24, seed=3)
    base = tiny_bert(root / "base", collection_texts(coll))
    index = Index.create(root / "index", Schema.from_dict(vector_schema(base), origin="tiny"))
    with index.writer() as w:
        w.add(read_catalog(coll))
        w.commit()
    before = Index.open(root / "index").searcher().stored_bytes("embedding")
    train, dev = load_beir(coll, "train"), load_beir(coll, "dev")
    [outcome] = fit(root / "index", train, dev, ["bi"], budget_s=150, progress=False, options={"bi": OPTIONS})
    return {"index": root / "index", "base": base, "outcome": outcome, "before": before, "dev": dev}


@pytest.mark.slow
def test_the_fit_learns_beyond_the_starting_encoder(fitted):
    manifest = fitted["outcome"].manifest
    assert manifest["dev"]["ndcg@10"] >= manifest["dev"]["start_ndcg@10"] + 0.05, manifest["training"]["curve"]
    assert manifest["kind"] == "bi-encoder" and manifest["active"] and manifest["device"] == "cpu"
    assert manifest["activation"]["docs"] == 72 and manifest["activation"]["previous_model"] == str(
        fitted["base"].resolve()
    )


@pytest.mark.slow
def test_the_corpus_is_reencoded_and_queries_use_the_new_model(fitted):
    index = Index.open(fitted["index"])
    model = ModelStore(index.path).active("bi")
    assert index.manifest["vectors"]["embedding"]["model"] == f"models/{model.name}"  # moves with the index
    assert index.manifest["models"]["embedding"]["model"] == f"models/{model.name}"
    keys_before, old = fitted["before"]
    keys_after, new = index.searcher().stored_bytes("embedding")
    assert sorted(keys_before.tolist()) == sorted(keys_after.tolist()) and index.searcher().num_docs == 72
    assert sorted(old) != sorted(new)  # every vector changed
    from souk.engine import Engine

    result = Engine.open(index.path).search("t5 red", pipeline="dense", k=3)
    assert result.hits and all(h.doc for h in result.hits)
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["base"] == str(fitted["base"].resolve()) and (model / "curve.png").stat().st_size > 0


@pytest.mark.slow
def test_a_failed_reencoding_leaves_index_and_active_models(fitted, monkeypatch):
    index_path = fitted["index"]
    store = ModelStore(index_path)
    active = store.active("bi").name
    manifest_before = (index_path / "manifest.json").read_text()
    vectors_before = Index.open(index_path).searcher().stored_bytes("embedding")[1]
    from souk.index import writer as writer_module

    def boom(self, batch):
        raise RuntimeError("power cut while encoding")

    monkeypatch.setattr(writer_module.Writer, "_encode", boom)
    store.activate(active)  # a second version to switch to: republish the same directory under a new name
    import shutil

    shutil.copytree(store.root / active, store.root / "bi-99")
    with pytest.raises(RuntimeError, match="power cut"):
        activate_model(index_path, "bi-99")
    assert store.active("bi").name == active
    assert (index_path / "manifest.json").read_text() == manifest_before
    assert Index.open(index_path).searcher().stored_bytes("embedding")[1] == vectors_before


@pytest.mark.slow
def test_reencode_refuses_what_it_cannot_do(fitted, tmp_path):
    from souk.index.vectors.reencode import reencode
    from model_fakes import write_tiny_bert

    cross = write_tiny_bert(tmp_path / "cross", kind="cross-encoder")
    with pytest.raises(ConfigError, match="cross-encoder"):
        reencode(fitted["index"], str(cross))
    with pytest.raises(ConfigError, match="re-encode"):
        reencode(fitted["index"], str(tmp_path / "nothing-here"))


def test_infonce_prefers_the_matching_document():
    import torch

    q = torch.nn.functional.normalize(torch.eye(3), dim=-1)
    assert float(bi.infonce(q, q, 0.05)) < 0.01
    assert float(bi.infonce(q, q.flip(0), 0.05)) > 10
    assert np.isclose(float(bi.infonce(q, torch.ones(3, 3) / 3 ** 0.5, 0.05)), np.log(3), atol=1e-5)


def test_infonce_does_not_push_a_query_away_from_its_own_document_seen_twice():
    import torch

    q = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.0]]), dim=-1)  # two queries, one product
    texts = ["sofa bed", "sofa bed"]
    assert float(bi.infonce(q, q, 0.05)) > 0.6  # each is the other's "negative": log 2
    assert float(bi.infonce(q, q, 0.05, texts)) < 1e-6
    q.requires_grad_(True)
    bi.infonce(q, q, 0.05, texts).backward()  # finite gradients through the left-out column
    assert torch.isfinite(q.grad).all()


@pytest.mark.slow
def test_bi_applies_to_an_index_with_one_vector_field_it_can_read(fitted, product_index):
    index = Index.open(fitted["index"])
    assert bi.applies(index.schema, index)  # the tiny base reads every script
    plain = Index.open(product_index)
    assert not bi.applies(plain.schema, plain)  # no vector field


# ---------------- issue 22: distill, temperature schedule, medium negatives

@pytest.fixture(scope="module")
def tiny_vectors(tmp_path_factory):
    """The topic collection indexed with a tiny random BERT's vectors; `full` is recall then ltr (no fit yet)."""
    from souk.catalogs import read_catalog
    from souk.schema import Schema

    root = tmp_path_factory.mktemp("bi22")
    coll = topic_collection(root / "beir", topics=12, seed=5)
    base = tiny_bert(root / "base", collection_texts(coll))
    schema = vector_schema(base)
    schema["pipelines"]["full"] = {"stages": [{"stage": "recall", "retrievers": ["bm25", "dense"]},
                                              {"stage": "ltr", "optional": True}]}
    index = Index.create(root / "index", Schema.from_dict(schema, origin="tiny"))
    with index.writer() as w:
        w.add(read_catalog(coll))
        w.commit()
    return {"index": root / "index", "base": base, "train": load_beir(coll, "train"), "dev": load_beir(coll, "dev")}


@pytest.mark.slow  # a tiny BERT built and loaded, FAISS imported: seconds on a loaded machine
def test_medium_negatives_are_the_band_of_the_encoders_own_ranking(tmp_path):
    from transformers import AutoModel

    docs = {f"d{i}": (f"t{i} {c}", "kit of wood") for i in range(6) for c in ("red", "blue")}
    base = tiny_bert(tmp_path / "base", [" ".join(d) for d in docs.values()])
    encoder = bi.PairEncoder(AutoModel.from_pretrained(str(base)).eval(), base, "cpu", 32, 8)

    class Texts:  # the one method of DocTexts that dense_band reads
        def get(self, ids):
            return [docs[i] for i in ids]

    corpus = list(docs)
    queries = {"q1": "t1 red", "q2": "t4 blue", "q3": "wood kit"}
    band = bi.dense_band(encoder, Texts(), corpus, queries, 3, 7)  # type: ignore[arg-type]
    vectors = encoder.encode([bi.doc_text(d) for d in docs.values()], "doc")
    for (qid, text), vector in zip(queries.items(), encoder.encode(list(queries.values()), "query")):
        order = np.argsort(-(vectors @ vector), kind="stable")
        assert band[qid] == [corpus[i] for i in order[3:7]], text


def test_distill_without_a_fitted_ranker_teaches_nothing(tmp_path):
    heads, note = bi.teacher_heads(tmp_path, None, {"q": "anything"}, 5)  # no models: the searcher is not read
    assert heads == {} and note["teacher"] is None and "no active ltr or cross" in note["note"]


def test_a_temperature_schedule_that_shrinks_is_refused(tmp_path):
    from souk.evaluation.datasets import Dataset
    from souk.training.fit import FitJob

    train = Dataset({"q": "x"}, {"q": {"d": 1}}, 0, "tiny", "train")
    job = FitJob(tmp_path, train, None, None, tmp_path, 0.0,
                 options={"temperature_schedule": True, "temperature_start": 0.2, "temperature_max": 0.1})
    with pytest.raises(ConfigError, match="temperature_start"):
        bi.fit_bi(job)


@pytest.mark.slow
def test_the_three_ideas_train_together_from_the_fitted_ranker(tiny_vectors, tmp_path):
    import shutil

    index = tmp_path / "index"
    shutil.copytree(tiny_vectors["index"], index)
    train, dev = tiny_vectors["train"], tiny_vectors["dev"]
    fit(index, train, dev, ["ltr"], budget_s=60, progress=False, options={"ltr": {"activate_anyway": True}})
    options = {**OPTIONS, "weak_pairs": 0, "queries_per_batch": 8, "epochs": 4, "eval_every": 4, "distill": True,
               "distill_depth": 10, "temperature_schedule": True, "medium_negatives": True, "medium_band": [3, 8]}
    [outcome] = fit(index, train, dev, ["bi"], budget_s=120, progress=False, options={"bi": options})
    manifest = outcome.manifest
    ideas = manifest["ideas"]
    assert ideas["distill"]["stages"] == ["ltr"] and ideas["distill"]["queries"] == len(train.qrels)
    assert ideas["distill"]["taught_pairs"] > 0 and ideas["distill"]["sigma"] > 0
    steps = manifest["training"]["steps"]
    assert ideas["temperature_schedule"]["over_steps"] == steps == 4 * (len(train.qrels) // 8)
    assert ideas["medium_negatives"]["remined_at"] == steps // 2
    assert manifest["dev"]["ndcg@10"] >= manifest["dev"]["start_ndcg@10"], manifest["training"]["curve"]
