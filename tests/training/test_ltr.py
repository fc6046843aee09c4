"""`souk fit --stages ltr` on the generated shop: the model, its evidence, reproducibility, click features."""
from __future__ import annotations

import json

import pytest

from souk.errors import DatasetError
from souk.evaluation.datasets import Dataset, load_beir
from souk.index import Index
from souk.models.store import ModelStore, read_model_manifest
from souk.ranking.pipeline import build_pipeline
from souk.training.fit import fit
from souk.training.online import learn_log
from ltr_shop import SHOP, shop_index

TRAIN, DEV = load_beir(SHOP, "train"), load_beir(SHOP, "dev")


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    return shop_index(tmp_path_factory.mktemp("shop") / "index")


def fit_ltr(path, dev=DEV, seed=3):
    [outcome] = fit(path, TRAIN, dev, ["ltr"], budget_s=120, seed=seed, progress=False)
    return ModelStore(path).root / outcome.model


def trees(model_dir):
    text = (model_dir / "model.txt").read_text()
    return text[text.index("Tree=0"):text.index("end of trees")]


def test_fit_writes_model_evidence_and_is_reproducible(shop):
    first = fit_ltr(shop)
    m = read_model_manifest(first, kind="ltr-lightgbm")
    names = m["features"]["names"]
    assert names[:2] == ["text.title.bm25", "text.title.bm25_rank"] and "number.rating.log" in names
    assert set(m["gain"]) == set(names) and m["gain"]["text.title.bm25"] >= 0
    assert m["cv"]["folds"] == 5 and 0 < m["cv"]["ndcg@10"]["mean"] <= 1
    assert m["dev"]["on"] == "ltr-shop/dev" and m["dev"]["ndcg@10"] >= m["dev"]["recall_ndcg@10"]
    assert m["rounds"] >= 1 and len(m["curve"]["valid"]) >= m["rounds"]
    for png in ("importance.png", "curve.png"):
        assert (first / png).read_bytes()[:4] == b"\x89PNG"
    assert ModelStore(shop).active("ltr") == first
    assert trees(fit_ltr(shop)) == trees(first)  # same seed, same trees


def test_without_dev_rounds_come_from_cross_validation_on_train(shop):
    m = read_model_manifest(fit_ltr(shop, dev=None, seed=4))
    assert m["dev"]["on"] == "5-fold CV on train" and m["dev"]["queries"] == m["train"]["queries"]
    assert m["cv"]["folds"] == 5 and m["dev"]["ndcg@10"] == pytest.approx(m["cv"]["ndcg@10"]["mean"], abs=1e-4)
    assert 1 <= m["rounds"] <= len(m["curve"]["valid"]) and m["rounds_chosen_on"] == m["dev"]["on"]


def test_cv_off_trains_only_the_served_booster(shop):
    """Option `cv` false (labels from clicks, `souk fit --events`): no K-fold CV, the same served model as with it,
    no held-out estimate in the report; it needs the rounds fixed."""
    from souk.errors import ConfigError
    from souk.training.ltr import OUT_OF_FOLD_FILE

    opts = {"rounds": 7, "activate_anyway": True}
    [with_cv] = fit(shop, TRAIN, None, ["ltr"], budget_s=120, seed=4, progress=False, options={"ltr": opts})
    [without] = fit(shop, TRAIN, None, ["ltr"], budget_s=120, seed=4, progress=False,
                    options={"ltr": {**opts, "cv": False}})
    root = ModelStore(shop).root
    m = read_model_manifest(root / without.model)
    assert m["cv"] == {"folds": 0, "ndcg@10": None, "recall_ndcg@10": None} and m["dev"]["ndcg@10"] is None
    assert m["rounds"] == 7 and m["dev"]["queries"] == 0 and without.manifest.get("active", True)
    assert read_model_manifest(root / with_cv.model)["cv"]["folds"] == 5
    assert not (root / without.model / OUT_OF_FOLD_FILE).exists()  # no fold scored a query: nothing to hand on
    assert (root / with_cv.model / OUT_OF_FOLD_FILE).is_file()
    assert trees(root / without.model) == trees(root / with_cv.model)  # CV never touched the served booster
    with pytest.raises(ConfigError, match="ltr.rounds"):
        fit(shop, TRAIN, None, ["ltr"], budget_s=60, progress=False, options={"ltr": {"cv": False}})


def test_too_few_findable_queries_is_a_clear_error(shop):
    tiny = Dataset.from_parts({"q": "red drill"}, {"q": {"p001": 1}}, name="tiny", split="train")
    with pytest.raises(DatasetError, match="ltr needs judged queries"):
        fit(shop, tiny, None, ["ltr"], budget_s=60, progress=False)


def test_click_model_becomes_a_feature(tmp_path):
    path = shop_index(tmp_path / "index")
    log = tmp_path / "clicks.jsonl"
    rows = [{"request": f"r{i}", "query": "red drill", "shown": ["p002", "p001", "p000"], "clicked": ["p000"]}
            for i in range(30)]
    log.write_text("\n".join(json.dumps(r) for r in rows))
    learn_log(path, log, progress=False)
    model_dir = fit_ltr(path)
    assert "clicks" in read_model_manifest(model_dir)["features"]["names"]
    pipe = build_pipeline("ltr", Index.open(path))
    assert pipe.run(pipe.plan("red drill"), 5).ranking.ids


def test_judged_only_trains_on_judged_candidates_and_rounds_can_be_fixed(shop):
    """Options `souk fit --events` uses: labels from clicks exist only for shown documents."""
    [everything] = fit(shop, TRAIN, None, ["ltr"], budget_s=120, seed=4, progress=False)
    [judged] = fit(shop, TRAIN, None, ["ltr"], budget_s=120, seed=4, progress=False,
                   options={"ltr": {"judged_only": True, "rounds": 7}})
    rows = {o.model: read_model_manifest(ModelStore(shop).root / o.model)["train"]["rows"]
            for o in (everything, judged)}
    judged_pairs = sum(len(g) for g in TRAIN.qrels.values())
    assert rows[judged.model] <= judged_pairs < rows[everything.model]
    assert read_model_manifest(ModelStore(shop).root / judged.model)["rounds"] == 7


def test_labels_from_clicks_fit_position_debiased_lambdarank(shop):
    """`souk fit --events`: a `ClickDataset` carries where the log showed each document; option `position_bias`
    makes LightGBM learn a bias per position (Unbiased LambdaMART) and the trees change; judged data ignore it."""
    from souk.errors import ConfigError
    from souk.events.labels import UNSHOWN_POSITION, ClickDataset
    from souk.training.ltr import Judged, click_positions

    positions = {q: {d: k + 1 for k, d in enumerate(sorted(g))} for q, g in TRAIN.qrels.items()}
    clicked = ClickDataset(TRAIN.queries, TRAIN.qrels, name="events", split="clicks", positions=positions)
    opts = {"rounds": 7, "activate_anyway": True}
    [plain] = fit(shop, clicked, None, ["ltr"], budget_s=120, seed=4, progress=False, options={"ltr": opts})
    [debiased] = fit(shop, clicked, None, ["ltr"], budget_s=120, seed=4, progress=False,
                     options={"ltr": {**opts, "position_bias": 0.03}})
    models = {o.model: ModelStore(shop).root / o.model for o in (plain, debiased)}
    params = read_model_manifest(models[debiased.model])["params"]
    assert params["lambdarank_position_bias_regularization"] == 0.03
    assert "lambdarank_position_bias_regularization" not in read_model_manifest(models[plain.model])["params"]
    assert trees(models[plain.model]) != trees(models[debiased.model])
    pipe = build_pipeline("ltr", Index.open(shop))
    assert pipe.run(pipe.plan("red drill"), 5).ranking.ids  # served like any ltr model

    import numpy as np

    from souk.types import Ranking
    judged = Judged(qids=["q"], rankings=[Ranking(["p001", "zzz"], np.asarray([2.0, 1.0]))])
    one = ClickDataset({"q": "red drill"}, {"q": {"p001": 1}}, positions={"q": {"p001": 3}})
    assert [p.tolist() for p in click_positions(judged, one, 0.0)] == [[3, UNSHOWN_POSITION]]
    assert click_positions(judged, TRAIN, 0.03) is None and click_positions(judged, one, None) is None
    with pytest.raises(ConfigError, match="position_bias"):
        fit(shop, clicked, None, ["ltr"], budget_s=60, progress=False, options={"ltr": {"position_bias": -1}})


def test_seed_ensemble_scores_the_mean_of_its_boosters(shop):
    import lightgbm as lgb
    import numpy as np

    from souk.models.lightgbm_text import load_booster
    from souk.training.ltr import PARAMS, merged_model

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(300, 4)), rng.integers(0, 3, 300).astype(float)
    g = np.full(30, 10)
    texts = [lgb.train({**PARAMS, "seed": s, "min_data_in_leaf": 5}, lgb.Dataset(X, y, group=g), 20).model_to_string()
             for s in (1, 2, 3)]
    singles = [load_booster(t.encode()).predict(X) for t in texts]
    merged = load_booster(merged_model(texts).encode())
    assert merged.num_trees() == 60 and np.allclose(merged.predict(X), np.mean(singles, axis=0), atol=1e-9)
    assert not np.allclose(singles[0], singles[1])  # the seeds differ, so averaging changes something
    m = read_model_manifest(fit_ltr(shop), kind="ltr-lightgbm")  # one booster by default (option off)
    assert m["members"] == 1
    for on in ({"ensemble": True}, {"ensemble": True, "max_trees": 2 * m["rounds"]}):  # on, or capped at two boosters
        [one] = fit(shop, TRAIN, DEV, ["ltr"], budget_s=120, seed=3, progress=False, options={"ltr": on})
        assert one.manifest["members"] == (5 if "max_trees" not in on else 2)


def test_labels_from_clicks_ensemble_debiases_every_member(shop):
    """`souk fit --events` averages position-debiased boosters from several seeds: each member gets the logged
    positions (without them a member would learn where the log showed documents)."""
    from types import SimpleNamespace

    import numpy as np

    from souk.events.labels import ClickDataset
    from souk.training.ltr import PARAMS, seed_ensemble

    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(300, 4)), rng.integers(0, 3, 300).astype(float)
    g, position = np.full(30, 10), np.tile(np.arange(1, 11, dtype=np.int32), 30)
    params = {**PARAMS, "seed": 3, "min_data_in_leaf": 5, "lambdarank_position_bias_regularization": 0.0}
    job = SimpleNamespace(seconds_left=1e9, deadline=None)
    names = [f"f{i}" for i in range(4)]
    debiased = seed_ensemble(X, y, g, params, names, 10, job, 2, position=position)
    plain = seed_ensemble(X, y, g, params, names, 10, job, 2)
    assert len(debiased) == len(plain) == 1 and debiased != plain
    positions = {q: {d: k + 1 for k, d in enumerate(sorted(grades))} for q, grades in TRAIN.qrels.items()}
    clicked = ClickDataset(TRAIN.queries, TRAIN.qrels, name="events", split="clicks", positions=positions)
    opts = {"rounds": 7, "activate_anyway": True, "cv": False, "position_bias": 0.03, "ensemble": True, "members": 3}
    [one] = fit(shop, clicked, None, ["ltr"], budget_s=120, seed=4, progress=False, options={"ltr": opts})
    assert one.manifest["members"] == 3 and one.manifest["rounds"] == 7


@pytest.mark.slow
def test_train_queries_keep_their_out_of_fold_scores_and_the_gain_can_be_linear(shop):
    from souk.ranking.ltr import LtrModel
    from souk.training.ltr import OUT_OF_FOLD_FILE, label_gain, recall_for

    assert label_gain(3) == [0, 1, 3, 7] and label_gain(3, linear=True) == [0, 1, 2, 3]
    assert label_gain(1, linear=True) == label_gain(1) == [0, 1]  # binary grades: the same either way
    [outcome] = fit(shop, TRAIN, DEV, ["ltr"], budget_s=120, seed=5, progress=False,
                    options={"ltr": {"linear_gain": True}})
    model_dir = ModelStore(shop).root / outcome.model
    m = read_model_manifest(model_dir)
    assert m["params"]["label_gain"] == [0.0, 1.0, 2.0, 3.0, 4.0]  # the shop's grades go to 4
    assert OUT_OF_FOLD_FILE in m["files"]  # sealed with the model: read only after its hash is checked
    oof = json.loads((model_dir / OUT_OF_FOLD_FILE).read_text())["queries"]
    assert len(oof) == m["train"]["queries"] and set(oof) <= set(TRAIN.queries)
    searcher = Index.open(shop).searcher()
    served = LtrModel(model_dir, searcher)
    planner, prior, depth, _ = recall_for(searcher)
    differs = 0
    for qid, head in list(oof.items())[:10]:
        assert 1 <= len(head["ids"]) <= 20 and head["scores"] == sorted(head["scores"], reverse=True)
        plan = planner.plan(TRAIN.queries[qid])
        candidates = prior.run_many([plan], depth)[0].ranking.top(depth)
        assert set(head["ids"]) <= set(candidates.ids)  # the ltr's own candidates
        by_served = dict(zip(candidates.ids, served.scores(plan, candidates).tolist()))
        differs += any(abs(by_served[i] - s) > 1e-4 for i, s in zip(head["ids"], head["scores"]))
    assert differs >= 5  # scored by the fold boosters that did not train on the query, not the served one
