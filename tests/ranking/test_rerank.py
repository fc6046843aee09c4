"""The `cross` stage through the pipeline, `souk search` and `souk eval` on a tiny fitted index."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from souk.cli.main import app
from souk.errors import ConfigError
from souk.index import Index
from souk.models.cross_encoder import PATHS
from souk.models.store import ModelStore
from souk.ranking.pipeline import build_pipeline
from souk.ranking.rerank import measure_model
from souk.ranking.stage import StageUnavailable

runner = CliRunner()


def last_json(*args) -> dict:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture()
def active(tiny_cross, monkeypatch):
    """The tiny fitted cross-encoder, active, and scored whatever weight its fit gave the mix (on the tiny dev
    set the fit may choose weight 0, which skips the model: these tests are about scoring the pairs)."""
    from souk.models.cross_encoder import Combination

    ModelStore(tiny_cross["index"]).activate(tiny_cross["outcome"].model)
    monkeypatch.setattr(Combination, "reads_cross", property(lambda self: True))
    return tiny_cross


def test_rerank_rescores_the_head_and_keeps_signals(active):
    pipe = build_pipeline("rerank", Index.open(active["index"]))
    run = pipe.run(pipe.plan("t5 green"), 30)
    assert [s.name for s in run.stages] == ["recall", "cross"]
    head = run.ranking.top(20)
    assert set(head.ids) == set(run.stages[0].ranking.top(20).ids)
    assert {"recall", "bm25", "cross", "cross_model"} <= set(head.signals)
    assert np.all(np.diff(head.scores) <= 1e-6)
    assert not np.isnan(head.signal("cross_model")).any()


def test_rerank_many_scores_every_query_in_one_pass_as_each_alone(active):
    pipe = build_pipeline("rerank", Index.open(active["index"]))
    plans = [pipe.plan(q) for q in ("t5 green", "blue", "t5")]
    cross = pipe.steps[0].stage
    calls = []
    score_pairs = cross.model.score_pairs
    cross.model.score_pairs = lambda pairs: calls.append(len(pairs)) or score_pairs(pairs)
    try:
        together = pipe.run_many(plans, 30)
        assert len(calls) == 1  # one forward pass for the three queries' heads
        alone = [pipe.run(p, 30) for p in plans]
    finally:
        del cross.model.score_pairs
    for a, b in zip(together, alone):
        assert a.ranking.ids == b.ranking.ids
        np.testing.assert_allclose(a.ranking.signal("cross_model"), b.ranking.signal("cross_model"),
                                   rtol=1e-4, atol=1e-5)


def test_a_model_mixed_at_weight_zero_is_not_run_and_the_prior_order_stands(active, monkeypatch):
    from souk.models.cross_encoder import Combination

    monkeypatch.undo()
    assert not Combination(weight=0.0).reads_cross and Combination(weight=0.1).reads_cross
    pipe = build_pipeline("rerank", Index.open(active["index"]))
    cross = pipe.steps[0].stage
    calls: list[int] = []
    score_pairs = cross.model.score_pairs
    cross.model.score_pairs = lambda pairs: calls.append(len(pairs)) or score_pairs(pairs)
    cross.model.combination = Combination(weight=0.0)
    try:
        run = pipe.run(pipe.plan("t5 green"), 30)
    finally:
        del cross.model.score_pairs
    assert calls == []
    head = run.ranking.top(20)
    assert list(head.ids) == list(run.stages[0].ranking.top(20).ids)
    assert np.isnan(head.signal("cross_model")).all()


def test_concurrent_searches_share_the_cross_encoders_passes(active):
    import threading
    import time

    pipe = build_pipeline("rerank", Index.open(active["index"]))
    queries = ["t5 green", "blue", "t5", "green"]
    alone = {q: pipe.run(pipe.plan(q), 30) for q in queries}
    cross = pipe.steps[0].stage
    calls, first_in, release = [], threading.Event(), threading.Event()
    score_pairs = cross.model.score_pairs

    def held(pairs):  # the first pass waits until the other searches queued behind it
        calls.append(len(pairs))
        first_in.set()
        release.wait(30)
        return score_pairs(pairs)

    cross.model.score_pairs = held
    out: dict[str, object] = {}
    try:
        threads = [threading.Thread(target=lambda q=q: out.__setitem__(q, pipe.run(pipe.plan(q), 30))) for q in queries]
        threads[0].start()
        assert first_in.wait(30)
        for t in threads[1:]:
            t.start()
        deadline = time.monotonic() + 30
        while len(cross._score._queue) < len(queries) - 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        release.set()
        for t in threads:
            t.join(30)
    finally:
        del cross.model.score_pairs
    assert len(calls) == 2  # the first search alone, the three that arrived meanwhile in one pass
    for q in queries:
        assert out[q].ranking.ids == alone[q].ranking.ids
        np.testing.assert_allclose(out[q].ranking.signal("cross_model"), alone[q].ranking.signal("cross_model"),
                                   rtol=1e-4, atol=1e-5)


def test_souk_search_and_eval_run_the_rerank_and_full_pipelines(active, monkeypatch, tmp_path):
    found = last_json("search", "t5 green", "--index", active["index"], "--pipeline", "rerank", "--explain", "--json")
    assert found["hits"] and "cross" in found["timings_ms"]
    assert "cross" in found["hits"][0]["explain"]
    result = last_json("eval", "--index", active["index"], "--dataset", active["collection"], "--split", "dev",
                       "--pipeline", "rerank", "--json")
    assert result["pipeline"] == "rerank" and result["queries"] == 36 and result["ndcg@10"] >= 0.9  # measured 0.99
    assert result["p50_ms"] > 0 and result["stage_p50_ms"]["cross"] > 0
    assert result["stage_paths"]["cross"] in PATHS  # the path the scores came from
    full = last_json("search", "t5 green", "--index", active["index"], "--pipeline", "full", "--json")
    assert "cross" in full["timings_ms"]
    monkeypatch.setenv("SOUK_CACHE_DIR", str(tmp_path))  # a machine that measured nothing (the fit may have)
    stats = last_json("stats", "--index", active["index"], "--json")
    assert stats["cross"] | {"measured": {}} == {"model": active["outcome"].model, "backend": "onnx-fp32",
                                                  "measured_here": False, "measured": {}}
    assert "not measured on this machine" in runner.invoke(app, ["stats", "--index", str(active["index"])]).output
    search = last_json("search", "t5 green", "--index", active["index"], "--pipeline", "full", "--json")
    assert "cross" in search["timings_ms"] and not list(tmp_path.glob("models/cross-choice-*.json"))  # no measuring
    measure_model(active["index"], ModelStore(active["index"]).active("cross"))
    stats = last_json("stats", "--index", active["index"], "--json")  # the path this machine measured for it
    assert stats["cross"]["measured_here"] and stats["cross"]["backend"] in stats["cross"]["measured"]
    shown = runner.invoke(app, ["stats", "--index", str(active["index"])])
    assert shown.exit_code == 0 and "pairs/s" in shown.output


def test_the_fitted_cross_encoder_ranks_the_relevant_document_far_above_chance(active):
    """On the 36 dev queries (topics never trained on), the cross-encoder's own score alone puts the one
    relevant document of recall's top 20 well above chance (a reranker ignoring the query, or scoring at random,
    sits near MRR 0.18 over 20), and the mixed order keeps recall's nDCG@10 or betters it."""
    from souk.evaluation.metrics import score_run

    pipe = build_pipeline("rerank", Index.open(active["index"]))
    dev = active["dev"]
    model, mixed, recall = {}, {}, {}
    for qid in dev.qrels:
        run = pipe.run(pipe.plan(dev.queries[qid]), 20)
        head = run.ranking.top(20)
        model[qid] = list(zip(head.ids, head.signal("cross_model").tolist()))
        mixed[qid] = list(zip(head.ids, np.asarray(head.scores).tolist()))
        first = run.stages[0].ranking.top(20)
        recall[qid] = list(zip(first.ids, np.asarray(first.scores).tolist()))
    scores = {name: score_run(r, dev.qrels, ["mrr@20", "ndcg@10"]).means() for name, r in
              (("model", model), ("mixed", mixed), ("recall", recall))}
    # measured: model MRR 0.39 (chance 0.18, one standard deviation of chance over 36 queries 0.04); mixed = recall 0.99
    assert len(model) == 36 and scores["model"]["mrr@20"] >= 0.3, scores
    assert scores["mixed"]["ndcg@10"] >= scores["recall"]["ndcg@10"] - 0.01, scores


def test_options_are_checked_and_a_missing_model_is_unavailable(active, tmp_path):
    index = Index.open(active["index"])
    with pytest.raises(ConfigError, match="cross.batch_size"):
        build_pipeline("rerank", index, {"cross": {"batch_size": 0}})
    with pytest.raises(ConfigError, match="unknown key 'depht'"):
        build_pipeline("rerank", index, {"cross": {"depht": 5}})
    with pytest.raises(ConfigError, match="neither a model of this index"):
        build_pipeline("rerank", index, {"cross": {"model": "cross-99"}})
    named = build_pipeline("rerank", index, {"cross": {"model": active["outcome"].model, "backend": "torch-fp32"}})
    assert named.steps[0].stage.model.backend == "torch-fp32"
    store = ModelStore(active["index"])
    (store.root / "active.json").write_text("{}")
    try:
        with pytest.raises(StageUnavailable, match="souk fit --stages cross"):
            build_pipeline("rerank", Index.open(active["index"]))
    finally:
        store.activate(active["outcome"].model)


def _damaged_copy(active, tmp_path, damage) -> "Path":
    """A copy of the fitted index whose active cross-encoder's files were damaged by `damage(model_dir)`."""
    import shutil

    from souk.models.store import seal

    path = tmp_path / "index"
    shutil.copytree(active["index"], path)
    model = ModelStore(path).active("cross")
    reseal = damage(model)
    if reseal:
        seal(model)
    return path


def _cut_safetensors(model):
    data = (model / "model.safetensors").read_bytes()
    (model / "model.safetensors").write_bytes(data[: len(data) // 2])
    return False  # its hash in the manifest no longer matches


def _cut_safetensors_resealed(model):
    data = (model / "model.safetensors").read_bytes()
    (model / "model.safetensors").write_bytes(data[: len(data) * 9 // 10])
    return True  # the hashes rewritten: safetensors itself must refuse it


def _pickle_weights(model):
    """Weights as a pickle whose unpickling would create a directory: torch must refuse it, never run it."""
    import os
    import pickle

    class Payload:
        def __reduce__(self):
            return (os.makedirs, (str(model.parent.parent / "PWNED"),))

    (model / "model.safetensors").unlink()
    (model / "pytorch_model.bin").write_bytes(pickle.dumps(Payload()))
    return True


def _header_lies(model):
    """A safetensors header claiming a tensor far beyond the file."""
    import struct

    header = (b'{"bert.embeddings.word_embeddings.weight":'
              b'{"dtype":"F32","shape":[999999999,4],"data_offsets":[0,15999999984]}}')
    (model / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\x00" * 64)
    return True


@pytest.mark.parametrize("damage", [_cut_safetensors, _cut_safetensors_resealed, _pickle_weights, _header_lies],
                         ids=["cut", "cut resealed", "pickle", "header lies"])
def test_a_damaged_cross_encoder_turns_the_stage_off_and_full_still_answers(active, tmp_path, damage):
    from souk.errors import ModelUnavailable

    path = _damaged_copy(active, tmp_path, damage)
    with pytest.raises(ModelUnavailable, match=r"model cross-\d+") as e:
        build_pipeline("rerank", Index.open(path))
    assert str(path) not in str(e.value) and "\n" not in str(e.value)
    pipe = build_pipeline("full", Index.open(path))
    plan = pipe.plan("t5 green")
    assert pipe.run(plan, 5).ranking.ids and any(n.startswith("stage cross skipped: model cross-") for n in plan.notes)
    assert not (path / "PWNED").exists()
    from support import run_main

    result = run_main("search", "t5 green", "--index", str(path), "--pipeline", "rerank", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert [x for x in result.stderr.splitlines() if x.strip()] == [f"error: {e.value}"]
    found = last_json("search", "t5 green", "--index", str(path), "--pipeline", "full", "--json")
    assert found["hits"] and any("stage cross skipped" in n for n in found["notes"])


def test_paths_are_measured_on_the_index_documents_never_by_a_stage(active, monkeypatch, tmp_path):
    from souk.models import cross_encoder
    from souk.ranking.rerank import probe_triples

    index = Index.open(active["index"])
    searcher = index.searcher()
    triples = probe_triples(searcher, {"title": "title", "text": []}, n=5)
    titles = [t for _, t, _ in triples]
    assert len(triples) == 10 and titles[0::2] == titles[1::2] and all(titles)
    assert all(q == " ".join(t.split()[:3]) for q, t, _ in triples[0::2])  # its own title's words, then another's
    assert triples[1][0] == triples[2][0]
    monkeypatch.setenv("SOUK_CACHE_DIR", str(tmp_path))
    path = active["index"] / "models" / active["outcome"].model
    assert cross_encoder.measured_path(path) is None
    monkeypatch.setattr(cross_encoder, "offered_paths", lambda: {n: None if n == "torch-fp32" else "off"
                                                                 for n in cross_encoder.PATHS})
    pipe = build_pipeline("rerank", index)  # a stage never measures: it takes the unmeasured path
    model = pipe.steps[0].stage.model
    assert model.backend == cross_encoder.unmeasured_path(path) == "onnx-fp32"  # over the export torch never wrote
    assert cross_encoder.measured_path(path) is None
    verdict = measure_model(active["index"], path)  # what activation and a server do: on the index's documents
    assert verdict["probe"] == "documents" and verdict["pairs"] == 2 * min(len(searcher.ids()), 24)
    assert cross_encoder.choose_path(path, model.packer) == verdict
    assert cross_encoder.measured_path(path)["backend"] == "torch-fp32"
    assert cross_encoder.measured_path(path, 32) is None  # pairs cut shorter are measured apart
    short = cross_encoder.measure_paths(path, triples[:3], 32)
    assert short["probe"] == "documents" and short["pairs"] == 3 and cross_encoder.measured_path(path, 32)
    assert cross_encoder.choose_path(path, cross_encoder.packer_for(path, 40))["probe"] == "pseudo-text"


def test_activation_measures_the_paths_and_a_server_measures_what_nobody_did(active, monkeypatch, tmp_path):
    from souk.engine import Engine
    from souk.models import cross_encoder
    from souk.training.fit import activate_model

    monkeypatch.setenv("SOUK_CACHE_DIR", str(tmp_path / "a"))  # a machine that measured nothing
    path = ModelStore(active["index"]).active("cross")
    engine = Engine.open(active["index"])
    assert engine.pipeline("rerank").steps[0].stage.model.backend == "onnx-fp32"  # unmeasured: no torch, no wait
    thread = engine.measure_in_background()  # what `souk serve` does after its warm-up
    assert thread is not None
    thread.join(120)
    measured = cross_encoder.measured_path(path)
    assert measured and measured["probe"] == "documents"
    assert engine.pipeline("rerank").steps[0].stage.model.backend == measured["backend"]  # rebuilt on it
    assert engine.measure_in_background() is None  # nothing left to measure

    monkeypatch.setenv("SOUK_CACHE_DIR", str(tmp_path / "b"))  # another machine: activating measures there
    done = activate_model(active["index"], path.name)["activation"]
    assert done["measured"] and done["backend"] == cross_encoder.measured_path(path)["backend"]
    assert set(done["pairs_per_s"]) <= set(cross_encoder.PATHS) and "torch-fp32" in done["pairs_per_s"]


def test_pipelines_that_cut_pairs_shorter_are_measured_at_their_length(active, monkeypatch, tmp_path):
    """A pipeline whose cross stage cuts pairs to its own `max_length` runs a path measured at that length: a
    server measures it in the background, and activation measures it with the model's own length."""
    import json
    import shutil

    from souk.engine import Engine
    from souk.models import cross_encoder
    from souk.ranking.rerank import cross_uses, unmeasured_crosses
    from souk.training.fit import activate_model

    index = shutil.copytree(active["index"], tmp_path / "index")
    manifest = json.loads((index / "manifest.json").read_text())
    manifest["schema"]["pipelines"]["short"] = {"stages": [{"stage": "recall", "retrievers": ["bm25"]},
                                                           {"stage": "cross", "depth": 20, "max_length": 32}]}
    manifest["schema"]["pipelines"]["pinned"] = {"stages": [{"stage": "recall", "retrievers": ["bm25"]},
                                                            {"stage": "cross", "backend": "torch-fp32"}]}
    (index / "manifest.json").write_text(json.dumps(manifest))
    pipelines = Index.open(index).schema.pipelines
    assert set(cross_uses(pipelines)) == {(None, None), (None, 32)}  # a fixed backend needs no measuring
    monkeypatch.setenv("SOUK_CACHE_DIR", str(tmp_path / "a"))
    path = ModelStore(index).active("cross")
    assert set(unmeasured_crosses(index, pipelines)) == {(path, None), (path, 32)}
    engine = Engine.open(index)
    thread = engine.measure_in_background()
    assert thread is not None
    thread.join(120)
    assert cross_encoder.measured_path(path) and cross_encoder.measured_path(path, 32)
    assert engine.pipeline("short").steps[0].stage.model.backend == cross_encoder.measured_path(path, 32)["backend"]
    assert unmeasured_crosses(index, pipelines) == [] and engine.measure_in_background() is None

    monkeypatch.setenv("SOUK_CACHE_DIR", str(tmp_path / "b"))  # another machine: activation measures both lengths
    done = activate_model(index, path.name)["activation"]
    assert done["measured"] and done["cut"] == {32: cross_encoder.measured_path(path, 32)["backend"]}
