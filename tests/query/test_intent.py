"""Intent classifier: data reading, threshold choice, training, oos decisions, round-trip, catalog path."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from support import DATA, FIXTURES, needs_shared

from souk.errors import ConfigError, DatasetError, ModelError
from souk.query.intent import (OOS, IntentConfig, IntentModel, LabeledQueries, catalog_queries, choose_threshold,
                               decide, read_labeled_tsv)

CHAR = IntentConfig(features={"char": {"ngrams": [1, 4], "min_df": 1}})


@pytest.fixture(scope="module")
def tiny() -> LabeledQueries:
    return read_labeled_tsv(FIXTURES / "intents.tsv")


@pytest.fixture(scope="module")
def char_model(tiny) -> IntentModel:
    return IntentModel.train(tiny, CHAR)


# ---- data ------------------------------------------------------------------------------------
def test_tsv_reader_skips_header_and_blank_lines(tmp_path, tiny):
    assert tiny.texts[0] == "what is the weather like today" and len(tiny) == 46
    assert tiny.intents == ["alarm", "balance", "translate", "weather"] and tiny.oos_count == 6
    f = tmp_path / "q.tsv"
    f.write_text("a query\tfoo\n\nanother\tbar\r\n", encoding="utf-8")
    assert read_labeled_tsv(f).labels == ["foo", "bar"]


@pytest.mark.parametrize("body, where", [
    ("ok\tfoo\nno tab here\n", ":2: expected text<TAB>intent, found 0 tabs"),
    ("ok\tfoo\tbar\n", ":1: expected text<TAB>intent, found 2 tabs"),
    ("ok\tfoo\n\t bar\n", ":2: empty text"),
    ("ok\t \n", ":1: empty intent"),
    ("", ": no labeled queries"),
])
def test_tsv_reader_names_file_and_line(tmp_path, body, where):
    f = tmp_path / "bad.tsv"
    f.write_text(body, encoding="utf-8")
    with pytest.raises(DatasetError, match=f"bad.tsv{where}"):
        read_labeled_tsv(f)


def test_tsv_reader_rejects_non_utf8_and_missing_file(tmp_path):
    f = tmp_path / "latin.tsv"
    f.write_bytes(b"ok\tfoo\ncaf\xe9\tbar\n")
    with pytest.raises(DatasetError, match="latin.tsv:2: not UTF-8"):
        read_labeled_tsv(f)
    with pytest.raises(DatasetError, match="no such file"):
        read_labeled_tsv(tmp_path / "absent.tsv")


# ---- threshold -------------------------------------------------------------------------------
def _brute_force(probs, classes, y, share):
    best = None
    for t in sorted({0.0, *np.round(probs.max(1), 6).tolist(), 1.0 + 1e-6}):
        labels, _ = decide(probs, classes, t)
        ins, oos = y != OOS, y == OOS
        score = (1 - share) * (labels[ins] == y[ins]).mean() + share * (labels[oos] == OOS).mean()
        best = score if best is None else max(best, score)
    return best


@pytest.mark.parametrize("seed, share", [(0, 0.2), (1, 0.5), (2, 0.05), (3, 0.2), (4, 0.9)])
def test_threshold_choice_is_the_exact_optimum(seed, share):
    rng = np.random.default_rng(seed)
    classes = np.array(["a", "b", "c", OOS], dtype=object)
    y = rng.choice(classes, size=60, p=[0.3, 0.3, 0.25, 0.15])
    probs = rng.dirichlet(np.ones(4) * 0.7, size=60).astype(np.float32)
    probs = np.round(probs, 2)  # ties between confidences must be cut between, never through
    choice = choose_threshold(probs, classes, y, share)
    labels, _ = decide(probs, classes, choice.threshold)
    ins, oos = y != OOS, y == OOS
    assert choice.in_scope_accuracy == pytest.approx((labels[ins] == y[ins]).mean())
    assert choice.oos_recall == pytest.approx((labels[oos] == OOS).mean())
    assert choice.objective == pytest.approx(_brute_force(probs, classes, y, share))


def test_a_larger_oos_share_never_lowers_the_threshold():
    rng = np.random.default_rng(7)
    classes = np.array(["a", "b", OOS], dtype=object)
    y = rng.choice(classes, size=200, p=[0.45, 0.45, 0.1])
    probs = rng.dirichlet(np.ones(3), size=200)
    thresholds = [choose_threshold(probs, classes, y, s).threshold for s in (0.01, 0.1, 0.3, 0.6, 0.9)]
    assert thresholds == sorted(thresholds) and thresholds[-1] > thresholds[0]


def test_threshold_is_zero_without_oos_examples():
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.55, 0.45]], dtype=np.float32)
    choice = choose_threshold(probs, np.array(["a", "b"], dtype=object), np.array(["a", "b", "b"], dtype=object))
    assert choice.threshold == 0.0 and choice.oos_recall is None and choice.in_scope_accuracy == pytest.approx(2 / 3)


# ---- training and prediction -----------------------------------------------------------------
def test_char_model_predicts_sensibly_in_english_and_chinese(char_model):
    queries = ["will it be sunny tomorrow", "how much is in my savings account", "set an alarm for 6 am",
               "how do i say thank you in french", "明天天气怎么样", "设置闹钟"]
    labels = [p.label for p in char_model.predict(queries, threshold=0.0)]
    assert labels == ["weather", "balance", "alarm", "translate", "weather", "alarm"]
    p = char_model.predict(["set an alarm for 6 am"])[0]
    assert p.label == "alarm" and p.confidence == p.top[0][1] > char_model.threshold
    assert [lab for lab, _ in p.top] == sorted(char_model.classes, key=lambda c: -dict(p.top)[c])
    assert sum(prob for _, prob in char_model.predict(["x"], k=10)[0].top) == pytest.approx(1.0, abs=1e-5)


def test_threshold_turns_low_confidence_into_oos(char_model):
    query = ["the history of the roman empire"]
    probs = char_model.probabilities(query)[0]
    assert char_model.predict(query, threshold=0.0)[0].label != OOS
    low = char_model.predict(query, threshold=float(probs.max()) + 1e-3)[0]
    assert low.label == OOS and low.confidence == pytest.approx(float(probs.max()))
    assert char_model.predict(query, threshold=float(probs.max()) - 1e-3)[0].label == low.top[0][0]


def test_training_records_its_choices(tiny):
    model = IntentModel.train(tiny, IntentConfig(features=CHAR.features, train_oos="auto", folds=3))
    info = model.info
    assert set(info["metrics"]["cv"]) == {"with", "without"}  # auto tried both
    chosen = "with" if info["hyper_parameters"]["oos_as_class"] else "without"
    assert model.threshold == info["metrics"]["cv"][chosen]["threshold"] > 0
    assert info["metrics"]["cv"][chosen]["objective"] >= max(v["objective"] for v in info["metrics"]["cv"].values())
    assert (OOS in model.classes.tolist()) == info["hyper_parameters"]["oos_as_class"]
    assert info["training"]["queries"] == len(tiny) and info["training"]["oos"] == 6
    fixed = IntentModel.train(tiny, IntentConfig(features=CHAR.features, train_oos="with", threshold=0.25))
    assert fixed.threshold == 0.25 and OOS in fixed.classes.tolist() and set(fixed.info["metrics"]["cv"]) == {"with"}


def test_too_few_classes_and_bad_config_are_refused(tiny):
    one = LabeledQueries(["a b", "c d", "e f"], ["x", "x", OOS], source="one.tsv")
    with pytest.raises(DatasetError, match="one.tsv: an intent model needs at least 2 labels other than 'oos', found 1: x"):
        IntentModel.train(one, CHAR)
    with pytest.raises(ConfigError, match="train_oos"):
        IntentConfig(train_oos="sometimes")
    with pytest.raises(ConfigError, match="unknown intent feature 'bow'"):
        IntentModel.train(tiny, IntentConfig(features={"bow": {}}))


def test_two_classes_give_two_column_probabilities():
    texts = [f"{w} {i}" for w, i in itertools.product(["red apple", "green pear"], range(6))]
    labels = ["apple"] * 6 + ["pear"] * 6
    model = IntentModel.train(LabeledQueries(texts, labels), CHAR)
    probs = model.probabilities(["red apple", "green pear"])
    assert probs.shape == (2, 2) and probs[0, 0] > 0.5 > probs[1, 0]


# ---- persistence -----------------------------------------------------------------------------
def test_round_trip_gives_the_same_predictions(char_model, tmp_path):
    out = char_model.save(tmp_path / "model")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "intent-classifier" and manifest["threshold"] == char_model.threshold
    assert manifest["labels"] == sorted({*char_model.classes.tolist(), OOS}) and manifest["seed"] == 13
    assert {"threshold_rule", "hyper_parameters", "metrics", "training", "created", "features"} <= set(manifest)
    loaded = IntentModel.load(out)
    queries = ["rain today?", "余额", "totally unrelated words"]
    assert np.allclose(loaded.probabilities(queries), char_model.probabilities(queries), atol=1e-6)
    assert [p.label for p in loaded.predict(queries)] == [p.label for p in char_model.predict(queries)]
    char_model.save(out)  # replacing an intent model directory is fine
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporary directory left behind


def test_loading_refuses_other_kinds_and_save_refuses_foreign_dirs(char_model, tmp_path):
    other = tmp_path / "ltr"
    other.mkdir()
    (other / "manifest.json").write_text(json.dumps({"kind": "lightgbm-ranker"}))
    with pytest.raises(ModelError, match="holds a 'lightgbm-ranker' model, not a 'intent-classifier' model"):
        IntentModel.load(other)
    with pytest.raises(ModelError, match="no such model directory"):
        IntentModel.load(tmp_path / "absent")
    with pytest.raises(ModelError, match="not an intent model directory"):
        char_model.save(other)
    assert json.loads((other / "manifest.json").read_text())["kind"] == "lightgbm-ranker"


# ---- catalog pseudo-queries ------------------------------------------------------------------
def test_catalog_categories_train_a_category_classifier(demo_index):
    from souk.index import Index

    searcher = Index.open(demo_index).searcher()
    data = catalog_queries(searcher, "category")
    assert len(set(data.labels)) == 10 and data.oos_count == 0
    assert "Marbo Cake - Cherry & Raisin 75g" in data.texts  # titles in English and Chinese are the pseudo-queries
    model = IntentModel.from_catalog(searcher, "category", config=IntentConfig(features=CHAR.features, folds=2))
    assert model.threshold == 0.0 and model.info["training"]["label_field"] == "category"
    labels = [p.label for p in model.predict(["shampoo", "beer", "洗发水", "milk powder for babies"])]
    assert labels == ["Personal care", "Beer / Wines / Spirits", "Personal care", "Milk powder / Baby care"]
    with pytest.raises(ConfigError, match="no keyword/text/stored field 'colour'"):
        catalog_queries(searcher, "colour")
    brands = catalog_queries(searcher, "category", text_fields=["brand_en"])
    assert len(brands) < len(data)


# ---- real data: one test loads MiniLM ------------------------------------------------------
@needs_shared("data", "clinc150", "train.tsv")
def test_clinc150_slice_with_minilm_meets_the_bar():
    """20 intents of CLINC150 plus its oos queries: train on train, check on val (threshold from train folds)."""
    train, val = read_labeled_tsv(DATA / "clinc150" / "train.tsv"), read_labeled_tsv(DATA / "clinc150" / "val.tsv")
    keep = set(train.intents[:20]) | {OOS}

    def part(d):
        rows = [(t, y) for t, y in zip(d.texts, d.labels) if y in keep]
        return LabeledQueries([t for t, _ in rows], [y for _, y in rows])

    model = IntentModel.train(part(train), IntentConfig(folds=3))
    assert model.info["training"]["encoder_backend"]
    dev = part(val)
    predicted = np.array([p.label for p in model.predict(dev.texts)], dtype=object)
    truth = np.array(dev.labels, dtype=object)
    in_scope = (predicted[truth != OOS] == truth[truth != OOS]).mean()
    oos_recall = (predicted[truth == OOS] == OOS).mean()
    assert in_scope >= 0.97 and oos_recall >= 0.8, (in_scope, oos_recall)  # measured 0.995 and 0.98


# ---- the query step --------------------------------------------------------------------------
def test_intent_step_fills_the_query_plan(char_model, tmp_path):
    import types

    import souk.query.intent.rewriter  # noqa: F401  (registers the step)
    from souk.models.store import ModelStore
    from souk.query.plan import Planner

    searcher = types.SimpleNamespace(path=tmp_path)  # the step only needs the index directory
    with pytest.raises(ConfigError, match="has no intent model; train one with `souk intent train --index"):
        Planner(searcher, ["syntax", "intent"])
    store = ModelStore(tmp_path)
    workdir = store.new("intent")
    char_model.write_files(workdir)
    store.publish("intent", workdir, char_model.manifest())
    plan = Planner(searcher, ["syntax", "intent"], {"intent": {"k": 2}}).plan("set an alarm for 6 am")
    assert plan.intent["label"] == "alarm" and len(plan.intent["top"]) == 2
    assert plan.intent["model"] == "intent-1" and plan.intent["field"] is None and plan.steps == ["syntax", "intent"]
    assert Planner(searcher, ["intent"], {"intent": {"model": "models/intent-1"}}).plan("  ").intent is None
    with pytest.raises(ConfigError, match="query.intent.depth: unknown option"):
        Planner(searcher, ["intent"], {"intent": {"depth": 3}})


@pytest.mark.parametrize("damage", ["flip", "extra file", "no hashes"])
def test_a_damaged_intent_model_turns_the_step_off_with_a_note(char_model, tmp_path, damage):
    import types

    import souk.query.intent.rewriter  # noqa: F401  (registers the step)
    from souk.models.store import ModelStore
    from souk.query.plan import Planner

    store = ModelStore(tmp_path)
    workdir = store.new("intent")
    char_model.write_files(workdir)
    path = store.publish("intent", workdir, char_model.manifest())
    weights = next(p for p in path.iterdir() if p.suffix == ".npz")
    if damage == "flip":
        data = bytearray(weights.read_bytes())
        data[len(data) // 2] ^= 0x10
        weights.write_bytes(bytes(data))
    elif damage == "extra file":
        (path / "evil.pkl").write_bytes(b"\x80\x04")
    else:
        manifest = json.loads((path / "manifest.json").read_text())
        del manifest["files"]
        (path / "manifest.json").write_text(json.dumps(manifest))
    plan = Planner(types.SimpleNamespace(path=tmp_path), ["syntax", "intent"]).plan("set an alarm for 6 am")
    assert plan.intent is None and plan.text == "set an alarm for 6 am"
    assert any(n.startswith("query step intent skipped: model intent-1") for n in plan.notes)
    assert not any(str(tmp_path) in n for n in plan.notes)


def test_a_saved_model_directory_is_sealed_and_checked(char_model, tmp_path):
    out = char_model.save(tmp_path / "model")
    assert set(json.loads((out / "manifest.json").read_text())["files"]) == {p.name for p in out.iterdir()} - {"manifest.json"}
    weights = next(p for p in out.iterdir() if p.suffix == ".npz")
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(ModelError, match="model model is damaged"):
        IntentModel.load(out)
