"""Stacking fusion: the features (`souk.retrieval.fusion.stack_features`), the `fusion` fitter
(`souk.training.stacking`) and the recall stage using its model (`souk.ranking.stacking`)."""

import json

import numpy as np
import pytest

from model_fakes import vector_index
from souk.evaluation.datasets import Dataset
from souk.models.store import ModelStore
from souk.ranking.pipeline import build_pipeline
from souk.ranking.recall import RecallStage
from souk.ranking.stacking import active_stacker
from souk.ranking.stage import StageContext
from souk.retrieval.fusion import fuse, restack, stack_columns, stack_features
from souk.training.fit import fit
from souk.types import Ranking


def test_features_describe_each_fused_document():
    bm25 = Ranking(["a", "b"], np.array([4.0, 2.0], np.float32))
    dense = Ranking(["b", "c"], np.array([0.9, 0.5], np.float32))
    fused = fuse([bm25, dense], "weighted", [1.0, 0.7], norm="minmax")
    x = stack_features(fused, [bm25, dense])
    assert x.shape == (3, len(stack_columns(["bm25", "dense"]))) == (3, 11)
    row = {d: dict(zip(stack_columns(["bm25", "dense"]), x[i])) for i, d in enumerate(fused.ids)}
    assert row["a"]["bm25.score"] == 4.0 and row["a"]["bm25.rank"] == 0 and row["a"]["bm25.norm"] == 1.0
    assert np.isnan(row["a"]["dense.score"]) and row["a"]["dense.rank"] == 2 and row["a"]["dense.found"] == 0
    assert row["b"]["lists"] == 2 and row["c"]["lists"] == 1
    assert [row[d]["fixed.rank"] for d in fused.ids] == [0, 1, 2]
    again = restack(fused, np.array([0.0, 0.0, 1.0]))
    assert again.ids == [fused.ids[2], fused.ids[0], fused.ids[1]]  # ties keep the fixed order


@pytest.fixture(scope="module")
def index(tiny_encoder, tmp_path_factory):
    return vector_index(tmp_path_factory.mktemp("stack"), tiny_encoder, 60)


def _data(index):
    docs = index.searcher().docs([f"doc{i}" for i in range(60)])
    return Dataset({f"q{i}": " ".join(d["text"].split()[:2]) for i, d in enumerate(docs)},
                   {f"q{i}": {f"doc{i}": 1} for i in range(60)}, 0, "tiny", "train")


@pytest.mark.slow
def test_the_fusion_fitter_trains_a_stacker_the_recall_stage_uses(index):
    data = _data(index)
    options = {"fusion": {"stacking": True, "min_gain": -1.0, "rounds": 20, "held_out_max": 15}}
    [out] = fit(index.path, data, None, ["fusion"], budget_s=120, options=options)
    m = out.manifest
    assert m["active"] and m["retrievers"] == ["bm25", "dense"] and m["held_out"]["queries"] == 12
    searcher = index.searcher()
    stage = RecallStage(StageContext(searcher), {"retrievers": ["bm25", "dense"]})
    assert stage.stacker is not None
    fixed = RecallStage(StageContext(searcher), {"retrievers": ["bm25", "dense"], "stacking": False})
    assert fixed.stacker is None
    assert RecallStage(StageContext(searcher), {"retrievers": ["dense", "bm25"]}).stacker is None  # other columns
    pipe = build_pipeline("hybrid", searcher)
    plans = [pipe.plan(data.queries[q]) for q in ("q1", "q2")]
    for a, b in zip(stage.recall(plans, 20), fixed.recall(plans, 20)):
        assert set(a.ids) == set(b.ids) and "bm25" in a.signals  # the same candidates, reordered
    [off] = fit(index.path, data, None, ["fusion"], budget_s=60, options={"fusion": {"stacking": False}})
    assert off.model is None and ModelStore(index.path).active("fusion") is None  # nothing published
    assert active_stacker(index.path, ["bm25", "dense"]) is None


@pytest.mark.slow
def test_a_damaged_stacker_is_not_used(index):
    data = _data(index)
    [out] = fit(index.path, data, None, ["fusion"], budget_s=120,
                options={"fusion": {"stacking": True, "min_gain": -1.0, "rounds": 5}})
    path = ModelStore(index.path).root / out.model
    assert active_stacker(index.path, ["bm25", "dense"]) is not None
    (path / "model.txt").write_text("tree\nversion=v4\nnum_class=1\n")
    assert active_stacker(index.path, ["bm25", "dense"]) is None
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["kind"] == "fusion-stacking"
    ModelStore(index.path).deactivate("fusion")
