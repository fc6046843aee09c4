"""The ltr stage: a model directory round-trips, and a model trained on other features is refused."""
from __future__ import annotations

import json

import numpy as np
import pytest

from souk.errors import ConfigError, ModelError
from souk.evaluation.datasets import load_beir
from souk.index import Index
from souk.models.store import ModelStore
from souk.ranking.features import FeatureEnv, FeatureSet
from souk.ranking.ltr import KIND, MODEL_FILE
from souk.ranking.pipeline import build_pipeline
from souk.ranking.stage import StageUnavailable
from ltr_shop import SHOP, shop_index


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    return shop_index(tmp_path_factory.mktemp("shop") / "index")


def publish_tiny_model(path, groups=("text", "signal", "number", "query"), rounds=5):
    """A LightGBM ranker trained in a few rounds on the shop's train queries, published as ltr-<n>."""
    import lightgbm as lgb

    searcher = Index.open(path).searcher()
    features = FeatureSet(FeatureEnv.open(searcher), list(groups))
    pipe = build_pipeline("bm25", searcher)
    data = load_beir(SHOP, "train")
    X, y, g = [], [], []
    for qid, text in data.queries.items():
        run = pipe.run(pipe.plan(text), 50)
        X.append(features.matrix(run.plan, run.ranking))
        y += [data.qrels[qid].get(i, 0) for i in run.ranking.ids]
        g.append(len(run.ranking))
    booster = lgb.train({"objective": "lambdarank", "verbosity": -1, "min_data_in_leaf": 5, "num_threads": 1},
                        lgb.Dataset(np.concatenate(X), np.asarray(y), group=g), num_boost_round=rounds)
    store = ModelStore(path)
    work = store.new("ltr")
    booster.save_model(str(work / MODEL_FILE))
    return store.publish("ltr", work, {"kind": KIND, "features": features.spec}), booster


def test_no_model_means_unavailable_and_an_optional_ltr_is_skipped(shop):
    with pytest.raises(StageUnavailable, match="souk fit"):
        build_pipeline("ltr", Index.open(shop))
    pipe = build_pipeline("mine", Index.open(shop), {"stages": [{"stage": "recall"}, {"stage": "ltr", "optional": True}]})
    plan = pipe.plan("red drill")
    assert pipe.run(plan, 5).ranking.ids and any("stage ltr skipped" in n for n in plan.notes)


def test_model_round_trip_scores_like_the_trained_booster(shop):
    model_dir, booster = publish_tiny_model(shop)
    pipe = build_pipeline("ltr", Index.open(shop))
    run = pipe.run(pipe.plan("blue saw"), 20)
    assert [s.name for s in run.stages] == ["recall", "ltr"]
    head = run.stages[0].ranking.top(100)
    X = pipe.steps[0].stage.model.features.matrix(run.plan, head)
    expected = booster.predict(X)
    ranked = run.stages[-1].ranking  # every candidate, in the ltr order
    got = dict(zip(ranked.ids, ranked.signal("ltr")))
    assert [got[i] for i in head.ids] == pytest.approx(expected.astype(np.float32).tolist(), rel=1e-5)
    assert np.all(np.diff(run.ranking.signal("ltr")) <= 1e-6)  # ordered by the model's scores
    pinned = build_pipeline("ltr", Index.open(shop), {"ltr": {"model": model_dir.name}})
    assert pinned.run(pinned.plan("blue saw"), 20).ranking.ids == run.ranking.ids


def test_mismatched_features_and_bad_options_are_refused(shop):
    model_dir, _ = publish_tiny_model(shop, groups=("text", "query"), rounds=2)
    manifest = json.loads((model_dir / "manifest.json").read_text())
    manifest["features"]["names"][0] = "text.name.bm25"
    (model_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="column 0 is 'text.name.bm25' there and 'text.title.bm25' here"):
        build_pipeline("ltr", Index.open(shop))
    with pytest.raises(ConfigError, match="unknown key 'depht'"):
        build_pipeline("ltr", Index.open(shop), {"ltr": {"depht": 5}})
    with pytest.raises(ModelError, match="no ltr model 'ltr-99'"):
        build_pipeline("ltr", Index.open(shop), {"ltr": {"model": "ltr-99"}})
