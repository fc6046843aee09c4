import numpy as np
import pytest

from souk.errors import Unavailable
from souk.index import Index
from souk.models.store import ModelStore
from souk.models.store import write_json_atomic
from souk.ranking.interact import InteractModel, InteractStage, corpus_stats, features_for, query_feature_ids
from souk.ranking.pipeline import build_pipeline
from souk.query.plan import QueryPlan
from souk.ranking.stage import StageContext
from souk.retrieval.wordvec import active_model, corpus_view
from souk.types import Ranking
from zh_mini import build_index, copy_of_fitted

PIPELINE = {"stages": [{"stage": "recall", "retrievers": ["bm25", "wordvec?"]}, {"stage": "interact", "depth": 20}]}


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """The fitted fixture with its interact model active (the fit may have left it inactive: on five dev
    queries it need not beat recall)."""
    path = copy_of_fitted(tmp_path_factory.mktemp("interact"))
    store = ModelStore(path)
    store.activate(sorted(p.name for p in store.root.glob("interact-*"))[-1])
    searcher = Index.open(path).searcher()
    wv_dir, model, _ = active_model(searcher)
    view = corpus_view(searcher, wv_dir, model)
    return searcher, model, view, corpus_stats(view, model)


def test_match_features_count_exact_matches_per_level(parts):
    searcher, model, view, stats = parts
    x, positions = features_for(model, view, stats, ["华为手机截屏", "xyzzy"], [["d11", "d20", "nope"], ["d11"]])
    assert x["present1"].shape[:2] == (2, 3) and (positions[0][:2] >= 0).all() and positions[0][2] == -1
    chars = query_feature_ids(model, "华为手机截屏")[1]
    assert len(chars) == 6
    # every character of the query is in d11 ("华为手机怎么截屏"), none in d20 ("红烧肉的家常做法")
    assert x["present1"][0, 0, :6].all() and not x["present1"][0, 1].any()
    bm25 = x["doc"][0, :, :, 1]  # log1p BM25 per level
    assert (bm25[0] > bm25[1]).all() and bm25[1].max() == 0
    assert not x["present0"][1].any() and x["mask0"][1].sum() == 1  # an unknown word: a query term matching nothing


def test_stage_reorders_candidates_and_keeps_unknown_ones_last(parts):
    stage = InteractStage(StageContext(parts[0]), {})
    ranking = Ranking(["d20", "nope", "d11", "d13"], np.array([3.0, 2.0, 1.0, 0.5], np.float32),
                      {"bm25": np.ones(4, np.float32)})
    out = stage.rerank(QueryPlan("华为手机截屏", "华为手机截屏"), ranking)
    order = [out.ids[i] for i in np.argsort(-out.scores, kind="stable")]
    assert order[0] == "d11" and order[-1] == "nope" and set(out.ids) == set(ranking.ids)
    assert "bm25" in out.signals


def test_model_round_trip_scores_like_the_stage(parts):
    searcher, model, view, stats = parts
    path = ModelStore(searcher.path).active("interact")
    a, b = InteractModel(path), InteractModel(path)
    x, _ = features_for(model, view, stats, ["红烧肉做法"], [["d20", "d21", "d0"]])
    assert np.allclose(a.score(x), b.score(x)) and a.score(x).shape == (1, 3)


def test_numpy_scoring_matches_the_torch_module_it_was_trained_as(parts, tmp_path):
    torch = pytest.importorskip("torch")
    from souk.training.interact import build_module, manifest_fields, save_module

    searcher, model, view, stats = parts
    torch.manual_seed(5)
    module = build_module()
    for p in module.parameters():
        torch.nn.init.normal_(p, std=0.5)
    save_module(module, tmp_path)
    write_json_atomic(tmp_path / "manifest.json", manifest_fields())
    x, _ = features_for(model, view, stats, ["华为手机截屏", "红烧肉 xyzzy"], [["d11", "d20", "d13"], ["d20", "d21"]])
    with torch.no_grad():
        expected = module({k: torch.from_numpy(v) for k, v in x.items() if k != "valid"}).numpy()
    assert np.allclose(InteractModel(tmp_path).score(x), expected, atol=1e-4)


def test_an_ensemble_scores_the_mean_of_its_members_and_a_bad_count_is_refused(parts, tmp_path):
    torch = pytest.importorskip("torch")
    from souk.errors import ModelUnavailable
    from souk.training.interact import build_module, manifest_fields, save_module

    searcher, model, view, stats = parts
    x, _ = features_for(model, view, stats, ["华为手机截屏"], [["d11", "d20", "d13"]])
    singles = []
    for k, name in enumerate(["weights.npz", "weights-1.npz"]):
        torch.manual_seed(k)
        module = build_module()
        save_module(module, tmp_path, name)
        (tmp_path / str(k)).mkdir()
        save_module(module, tmp_path / str(k))
        write_json_atomic(tmp_path / str(k) / "manifest.json", manifest_fields())
        singles.append(InteractModel(tmp_path / str(k)).score(x))
    write_json_atomic(tmp_path / "manifest.json", {**manifest_fields(), "members": 2})
    assert np.allclose(InteractModel(tmp_path).score(x), (singles[0] + singles[1]) / 2, atol=1e-6)
    assert not np.allclose(singles[0], singles[1])
    for bad in (0, 17, "2", True):
        write_json_atomic(tmp_path / "manifest.json", {**manifest_fields(), "members": bad})
        with pytest.raises(ModelUnavailable, match="members"):
            InteractModel(tmp_path)
    write_json_atomic(tmp_path / "manifest.json", {**manifest_fields(), "members": 3})  # weights-2.npz is missing
    with pytest.raises(ModelUnavailable, match="unreadable"):
        InteractModel(tmp_path)


def test_fit_trains_ensemble_members_from_consecutive_seeds(tmp_path):
    import json

    from zh_mini import FAST, fit_fast

    path = copy_of_fitted(tmp_path)
    options = {**FAST, "interact": {**FAST["interact"], "ensemble": True, "members": 2}}
    [outcome] = fit_fast(path, stages=("interact",), options=options)
    manifest = json.loads((ModelStore(path).root / outcome.model / "manifest.json").read_text())
    first, second, mean = manifest["member_ndcg@10"]  # both trained; kept only where their mean beat the first
    assert manifest["members"] in (1, 2)
    if manifest["members"] == 2:  # the mean beat the first member on the early-stopping split
        assert manifest["dev"]["ndcg@10"] == mean >= first
    else:
        assert manifest["dev"]["ndcg@10"] == first >= mean
    files = {p.name for p in (ModelStore(path).root / outcome.model).iterdir()}
    assert ("weights-1.npz" in files) == (manifest["members"] == 2)
    assert len(InteractModel(ModelStore(path).root / outcome.model).members) == manifest["members"]


def test_pipeline_with_interact_and_without_a_model(parts, tmp_path):
    pipe = build_pipeline("mine", parts[0], PIPELINE)
    run = pipe.run(pipe.plan("宝宝有痰怎么办"), 10)
    assert [s.name for s in run.stages] == ["recall", "interact"] and run.ranking.ids[0] == "d2"
    assert "interact" in run.ranking.signals
    plain = build_index(tmp_path / "plain").searcher()
    with pytest.raises(Unavailable, match="interact"):
        InteractStage(StageContext(plain), {})


def test_ltr_is_fitted_on_the_candidates_and_signals_interact_gives_it(parts, tmp_path):
    import json

    from souk.training.ltr import recall_for
    from zh_mini import fit_fast

    searcher = parts[0]
    _, prior, depth, _ = recall_for(searcher)
    assert [s.name for s in prior.steps] == ["interact"] and depth == 100
    run = prior.run(prior.plan("宝宝有痰怎么办"), depth)
    assert "interact" in run.ranking.signals
    [outcome] = fit_fast(searcher.path, stages=("ltr",), options={"ltr": {"threads": 1}})
    manifest = json.loads((ModelStore(searcher.path).root / outcome.model / "manifest.json").read_text())
    assert "learned" in manifest["features"]["groups"] and "signal.interact" in manifest["features"]["names"]
    ModelStore(searcher.path).activate(outcome.model)  # on five dev queries it need not beat interact's order
    pipe = build_pipeline("ltr", searcher)
    assert [s.name for s in pipe.run(pipe.plan("宝宝有痰怎么办"), 10).stages] == ["recall", "interact", "ltr"]


@pytest.mark.parametrize("target", ["wordvec", "interact"])
def test_damaged_word_vectors_or_interact_weights_turn_their_parts_off(tmp_path, target):
    """A cut `.npz` of the word-vector model or the interact weights: the learned recall leaves wordvec out (or the
    interact stage is skipped) with a note naming the model, and the `ltr`-less pipelines still answer."""
    path = copy_of_fitted(tmp_path)
    store = ModelStore(path)
    store.activate(sorted(p.name for p in store.root.glob("interact-*"))[-1])
    model = store.active(target)
    npz = next(model.glob("*.npz"))
    npz.write_bytes(npz.read_bytes()[:100])
    pipe = build_pipeline("full", Index.open(path))
    plan = pipe.plan("宝宝有痰怎么办")
    assert pipe.run(plan, 5).ranking.ids
    notes = " | ".join(plan.notes)
    assert f"model {model.name} is damaged: {npz.name} does not match the sha256" in notes
    assert "stage interact skipped" in notes and str(path) not in notes
    if target == "wordvec":
        assert "retriever wordvec left out" in notes
