"""Versioned model directories: publish, activate, list; interrupted fits leave the active model alone."""
import json
import os

import pytest

from souk.errors import ModelError, ModelUnavailable
from souk.models.store import ModelStore, read_model_manifest


def test_publish_versions_and_switches_active(tmp_path):
    store = ModelStore(tmp_path)
    first = store.publish("ltr", store.new("ltr"), {"kind": "ltr", "dev": {"ndcg@10": 0.4}})
    second = store.publish("ltr", store.new("ltr"), {"kind": "ltr", "dev": {"ndcg@10": 0.5}})
    assert (first.name, second.name) == ("ltr-1", "ltr-2")
    assert store.active("ltr") == second
    store.activate("ltr-1")
    assert store.active("ltr") == first
    assert [(m["name"], m["active"]) for m in store.list()] == [("ltr-1", True), ("ltr-2", False)]
    assert read_model_manifest(first, kind="ltr")["dev"] == {"ndcg@10": 0.4}
    with pytest.raises(ModelError, match="holds a 'ltr' model, not a 'cross' model"):
        read_model_manifest(first, kind="cross")
    with pytest.raises(ModelError, match="no model 'ltr-9'"):
        store.activate("ltr-9")


def test_deactivate_leaves_the_stage_without_an_active_model_and_the_others_alone(tmp_path):
    store = ModelStore(tmp_path)
    assert store.deactivate("fusion") is False
    ltr = store.publish("ltr", store.new("ltr"), {"kind": "ltr"})
    store.publish("fusion", store.new("fusion"), {"kind": "fusion-stacking"})
    assert store.deactivate("fusion") is True
    assert store.active("fusion") is None and store.active("ltr") == ltr
    store.activate("fusion-1")
    assert store.active("fusion").name == "fusion-1"


def test_inactive_publish_and_unfitted_stage(tmp_path):
    store = ModelStore(tmp_path)
    assert store.active("cross") is None
    store.publish("cross", store.new("cross"), {"kind": "cross"}, activate=False)
    assert store.active("cross") is None


def test_stale_workdirs_of_dead_fits_are_cleaned(tmp_path):
    store = ModelStore(tmp_path)
    live = store.new("ltr")
    dead = store.root / ".tmp-ltr-999999999-abc"
    dead.mkdir()
    assert store.clean() == 1
    assert live.exists() and not dead.exists()
    assert os.listdir(store.root) == [live.name]


def _published(tmp_path, files=None):
    store = ModelStore(tmp_path)
    work = store.new("ltr")
    for name, data in (files or {"model.txt": b"tree\n", "sub/weights.npz": b"\x00\x01"}).items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_bytes(data)
    return store, store.publish("ltr", work, {"kind": "ltr"})


def test_publish_seals_every_file_and_a_changed_missing_or_extra_file_is_refused(tmp_path):
    import hashlib

    store, path = _published(tmp_path)
    manifest = read_model_manifest(path, kind="ltr")
    assert manifest["files"] == {"model.txt": hashlib.sha256(b"tree\n").hexdigest(),
                                 "sub/weights.npz": hashlib.sha256(b"\x00\x01").hexdigest()}
    (path / "model.txt").write_bytes(b"tree\nX")
    with pytest.raises(ModelUnavailable, match="model ltr-1 is damaged: model.txt does not match the sha256"):
        read_model_manifest(path)
    (path / "model.txt").write_bytes(b"tree\n")
    (path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ModelUnavailable, match="pytorch_model.bin is not listed"):
        read_model_manifest(path)
    (path / "pytorch_model.bin").unlink()
    (path / "sub" / "weights.npz").unlink()
    with pytest.raises(ModelUnavailable, match="sub/weights.npz is missing"):
        read_model_manifest(path)
    assert store.list()[0]["name"] == "ltr-1"  # listing never fails on a damaged model


def test_unsealed_or_symlinked_files_in_a_published_model_are_refused(tmp_path):
    store, path = _published(tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["files"]
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelUnavailable, match="model ltr-1 has no file hashes"):
        read_model_manifest(path)
    manifest["files"] = {"model.txt": "not a hash"}
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelUnavailable, match="not a map of file names to sha256"):
        read_model_manifest(path)
    store2, path2 = _published(tmp_path / "b")
    secret = tmp_path / "secret"
    secret.write_text("admin key")
    (path2 / "model.txt").unlink()
    (path2 / "model.txt").symlink_to(secret)
    with pytest.raises(ModelUnavailable, match="model.txt is a symlink"):
        read_model_manifest(path2)
    for bad in ("[1, 2]", "{", "\xff"):
        (path2 / "manifest.json").write_text(bad, encoding="latin-1")
        with pytest.raises(ModelUnavailable, match="model ltr-1"):
            read_model_manifest(path2)


@pytest.mark.parametrize("entry", ["../../outside/evil", "/etc", 5, 1.5, ["ltr-1"], {"a": 1}, "cross-1",
                                   "ltr-1/../ltr-1", "ltr-01x", "a" * 500])
def test_active_json_entries_outside_models_or_of_another_type_are_refused(tmp_path, entry):
    store, path = _published(tmp_path)
    (store.root / "active.json").write_text(json.dumps({"ltr": entry}))
    with pytest.raises(ModelUnavailable, match=r"models/active.json: ltr -> .* is not a model name like ltr-3") as e:
        store.active("ltr")
    assert str(tmp_path) not in str(e.value) and len(str(e.value)) < 300
    assert [m["active"] for m in store.list()] == [False]
    store.activate("ltr-1")  # activating again repairs it
    assert store.active("ltr") == path


def test_a_model_directory_symlinked_out_of_models_is_refused(tmp_path):
    store, path = _published(tmp_path)
    outside = tmp_path / "outside"
    path.rename(outside)
    (store.root / "ltr-1").symlink_to(outside)
    with pytest.raises(ModelUnavailable, match="ltr -> 'ltr-1' is not a model name"):
        store.active("ltr")
    with pytest.raises(ModelError, match="no model 'ltr-1'"):
        store.activate("ltr-1")
    assert store.resolve("ltr-1") is None and store.resolve("../x") is None


@pytest.mark.parametrize("content", ["[]", '"ltr-1"', "{", "\x00\x01", "1e999999"])
def test_an_unreadable_active_json_is_one_clear_error(tmp_path, content):
    store, _ = _published(tmp_path)
    (store.root / "active.json").write_text(content)
    with pytest.raises(ModelUnavailable, match="models/active.json"):
        store.active("ltr")
    assert [m["active"] for m in store.list()] == [False]  # listing still works
    store.activate("ltr-1")  # and activating repairs the file
    assert store.active("ltr") == store.root / "ltr-1"


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
                     lambda inner: (st.lists(inner, max_size=4)
                                    | st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                     max_leaves=12)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=200) | _json.map(lambda v: json.dumps({"ltr": v}).encode()))
def test_property_any_active_json_resolves_inside_models_or_is_one_clear_error(tmp_path, content):
    store = ModelStore(tmp_path)
    if not (store.root / "ltr-1").exists():
        _published(tmp_path)
    (store.root / "active.json").write_bytes(content)
    try:
        found = store.active("ltr")
    except ModelUnavailable as e:
        assert "models/active.json" in str(e) and str(tmp_path) not in str(e) and "\n" not in str(e)
        return
    assert found is None or found == store.root / "ltr-1"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.floats(0, 1, exclude_max=True),
       flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 7)), max_size=3))
def test_property_a_truncated_or_flipped_manifest_is_refused_or_still_checks_the_files(tmp_path, cut, flips):
    store = ModelStore(tmp_path)
    path = store.root / "ltr-1"
    if not path.exists():
        _published(tmp_path)
        (tmp_path / "good.json").write_bytes((path / "manifest.json").read_bytes())
    data = bytearray((tmp_path / "good.json").read_bytes())
    for where, bit in flips:
        data[int(where * len(data))] ^= 1 << bit
    (path / "manifest.json").write_bytes(bytes(data[: max(1, int(len(data) * (1 - cut / 2)))] if cut > 0.5 else data))
    try:
        manifest = read_model_manifest(path)
    except ModelError as e:
        assert "ltr-1" in str(e) or "not a" in str(e)
        return
    assert manifest["files"] == json.loads((tmp_path / "good.json").read_text())["files"]  # a hash that survived intact


def test_seal_records_hashes_of_an_older_model_by_name_only(tmp_path):
    store, path = _published(tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["files"]
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelUnavailable, match="no file hashes"):
        read_model_manifest(path)
    assert store.seal("ltr-1") == path
    assert set(read_model_manifest(path)["files"]) == {"model.txt", "sub/weights.npz"}
    for bad in ("../ltr-1", "/etc", "ltr-7"):
        with pytest.raises(ModelError, match="no model"):
            store.seal(bad)


def test_fifos_never_block_the_check_and_manifests_or_active_json_that_are_not_files_are_refused(tmp_path):
    store, path = _published(tmp_path)
    os.mkfifo(path / "pipe")
    with pytest.raises(ModelUnavailable, match="pipe is not a regular file"):
        read_model_manifest(path)
    (path / "pipe").unlink()
    (path / "manifest.json").rename(path / "m.json")
    os.mkfifo(path / "manifest.json")
    with pytest.raises(ModelUnavailable, match="manifest.json is not a regular file"):
        read_model_manifest(path)
    (store.root / "active.json").unlink()
    os.mkfifo(store.root / "active.json")
    with pytest.raises(ModelUnavailable, match="models/active.json is not a regular file"):
        store.active("ltr")


def test_a_models_directory_that_is_a_symlink_out_of_the_index_is_refused(tmp_path):
    outside, _ = _published(tmp_path / "outside")
    (tmp_path / "index").mkdir()
    (tmp_path / "index" / "models").symlink_to(outside.root)
    with pytest.raises(ModelUnavailable, match="models/ is a symlink"):
        ModelStore(tmp_path / "index").active("ltr")


# ---- resolve and load: one way for every kind of model ----------------------------------------------------------
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from souk.errors import Unavailable  # noqa: E402
from souk.models import store as model_store  # noqa: E402


def _ltr(work: Path, seed: int):
    import lightgbm as lgb

    from souk.ranking.ltr import KIND, MODEL_FILE, read_model

    rng = np.random.default_rng(seed)
    X, y = rng.normal(size=(60, 3)), rng.integers(0, 3, 60)
    lgb.train({"objective": "lambdarank", "verbosity": -1, "min_data_in_leaf": 2, "num_threads": 1},
              lgb.Dataset(X, y, group=[20, 20, 20]), num_boost_round=2).save_model(str(work / MODEL_FILE))
    return {"kind": KIND, "features": {}}, read_model, ()


def _cross(work: Path, seed: int):
    from model_fakes import write_tiny_bert
    from souk.models.cross_encoder import CrossEncoder

    write_tiny_bert(work, kind="cross-encoder", seed=seed)
    return json.loads((work / "manifest.json").read_text()), CrossEncoder, ("torch-fp32", 8, None)


def _clicks(work: Path, seed: int):
    from souk.ranking.clicks import KIND, ClickModel

    model = ClickModel(bits=10)
    model.z[seed] = 1.0
    model.n[seed] = 1.0
    model.save(work)
    return {"kind": KIND, "params": model.params}, ClickModel.load, ()


def _interact(work: Path, seed: int):
    from souk.ranking.interact import GLOBAL_FEATURES, LEVEL_FEATURES, InteractModel
    from souk.training.interact import manifest_fields

    rng = np.random.default_rng(seed)
    layers = ((0, "weight", (8, 2)), (0, "bias", (8,)), (2, "weight", (1, 8)), (2, "bias", (1,)))
    shapes = {f"term_weights.{i}.{layer}.{p}": shape for i in range(3) for layer, p, shape in layers}
    shapes |= {"mlp.0.weight": (4, 3 * LEVEL_FEATURES + GLOBAL_FEATURES), "mlp.0.bias": (4,), "mlp.2.weight": (1, 4),
              "mlp.2.bias": (1,)}
    np.savez(work / "weights.npz", **{k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()})
    return manifest_fields(), InteractModel, ()


def _wordvec(work: Path, seed: int):
    from souk.models.word_vectors import WordVectors
    from souk.retrieval.wordvec import read_model

    feats = ["手机", "#手", "#机", "##手机"]
    vectors = np.random.default_rng(seed).normal(size=(4, 8)).astype(np.float32)
    WordVectors(feats, vectors, np.ones(4, np.float32)).save(work)
    return {"kind": "wordvec"}, read_model, ()


def _intent(work: Path, seed: int):
    from souk.query.intent import IntentConfig, IntentModel, read_labeled_tsv
    from support import FIXTURES

    model = IntentModel.train(read_labeled_tsv(FIXTURES / "intents.tsv"),
                              IntentConfig(features={"char": {"ngrams": [1, 3], "min_df": 1}}, c=float(seed)))
    model.write_files(work)
    return model.manifest(), IntentModel.load, ()


def _tagger(work: Path, seed: int):
    import torch

    from souk.query.entities.features import Featurizer, Vocab
    from souk.query.entities.network import BiLstmCrf, NetworkConfig
    from souk.query.entities.tagger import Tagger

    torch.manual_seed(seed)
    tags = ["O", "B-HPPX", "I-HPPX"]
    chars, bigrams = Vocab(list("华为手机壳")), Vocab(["华为", "手机"])
    network = BiLstmCrf(NetworkConfig(char_dim=8, bigram_dim=8, segment_dim=4, hidden=8, dropout=0.0),
                        len(chars), len(bigrams), tags)
    Tagger(network, Featurizer(chars, bigrams, False), tags).save(work)
    return json.loads((work / "manifest.json").read_text()), Tagger.load, ()


KINDS = {"ltr": _ltr, "cross": _cross, "clicks": _clicks, "interact": _interact, "wordvec": _wordvec, "intent": _intent,
         "tagger": _tagger}


def _publish_two(tmp_path, stage):
    """Two models of `stage` published into an index directory's store (the second active)."""
    store = ModelStore(tmp_path)
    for seed in (1, 2):
        work = store.new(stage)
        manifest, loader, options = KINDS[stage](work, seed)
        store.publish(stage, work, {k: v for k, v in manifest.items() if k != "files"})
    return store, loader, options


@pytest.mark.parametrize("stage", [pytest.param(k, marks=pytest.mark.slow) if k == "cross" else k for k in KINDS])
def test_every_kind_loads_once_pinned_or_active_and_follows_activation(tmp_path, stage):
    store, loader, options = _publish_two(tmp_path, stage)

    def load(pinned=None):
        return model_store.load(tmp_path, stage, loader, pinned, options=options, unfitted=f"fit a {stage} model")

    active = load()
    assert model_store.loaded()[-1] == (store.root / f"{stage}-2").resolve() and load() is active  # loaded once
    first = load(f"{stage}-1")
    assert first is not active and model_store.loaded()[-1].name == f"{stage}-1"
    assert load(f"models/{stage}-1") is first and load(str(store.root / f"{stage}-1")) is first  # a path: the same
    store.activate(f"{stage}-1")  # `souk fit` or `souk models --activate` in another process: the next build sees it
    assert load() is first
    with pytest.raises(ModelError, match=f"no {stage} model '{stage}-9' in this index.*models: {stage}-1, {stage}-2"):
        load(f"{stage}-9")
    (store.root / "active.json").write_text("{}")
    assert model_store.resolve(tmp_path, stage) is None
    with pytest.raises(Unavailable, match=f"fit a {stage} model"):
        load()


@pytest.mark.parametrize("stage", [pytest.param(k, marks=pytest.mark.slow) if k == "cross" else k for k in KINDS])
def test_every_kind_refuses_a_damaged_file_or_manifest_with_the_model_name_only(tmp_path, stage):
    store, loader, options = _publish_two(tmp_path, stage)
    second = store.root / f"{stage}-2"
    files = [p for p in second.rglob("*") if p.is_file() and p.name != "manifest.json"]
    biggest = max(files, key=lambda p: p.stat().st_size)
    biggest.write_bytes(biggest.read_bytes()[: biggest.stat().st_size // 2])
    with pytest.raises(ModelUnavailable, match=f"model {stage}-2 is damaged") as e:
        model_store.load(tmp_path, stage, loader, options=options, unfitted="-")
    assert str(tmp_path) not in str(e.value)
    (store.root / f"{stage}-1" / "manifest.json").write_text('{"kind": ')
    with pytest.raises(ModelUnavailable, match=f"model {stage}-1: unreadable manifest.json") as e:
        model_store.load(tmp_path, stage, loader, f"{stage}-1", options=options, unfitted="-")
    assert str(tmp_path) not in str(e.value)


def _read(path: Path) -> dict:
    return {"text": (path / "weights.txt").read_text(), "manifest": read_model_manifest(path)}


def _publish_text(store: ModelStore, stage: str, text: str, **manifest) -> Path:
    work = store.new(stage)
    (work / "weights.txt").write_text(text)
    return store.publish(stage, work, {"kind": "fake", **manifest})


def test_the_cache_is_bounded_least_recently_used_first(tmp_path, monkeypatch):
    monkeypatch.setattr(model_store, "MAX_LOADED", 2)
    store = ModelStore(tmp_path)
    paths = [_publish_text(store, "fake", f"w={i}") for i in range(3)]
    a = model_store.cached(paths[0], _read)
    model_store.cached(paths[1], _read)
    assert model_store.cached(paths[0], _read) is a  # used again: now the most recent
    model_store.cached(paths[2], _read)
    assert model_store.loaded()[-2:] == [paths[0].resolve(), paths[2].resolve()] and len(model_store.loaded()) == 2
    assert model_store.cached(paths[0], _read) is a and model_store.cached(paths[1], _read) is not None
    monkeypatch.setattr(model_store, "MAX_LOADED", 16)
    monkeypatch.setattr(model_store, "MAX_LOADED_PER_LOADER", 1)  # per kind: a replaced model goes first
    other = model_store.cached(paths[2], _read_again)
    model_store.cached(paths[2], _read)  # loaded: the older models of this loader are dropped, not the other's
    assert model_store.loaded() == [paths[2].resolve(), paths[2].resolve()]
    assert model_store.cached(paths[2], _read_again) is other and model_store.cached(paths[0], _read) is not a


def _read_again(path: Path) -> dict:
    return _read(path)


def test_a_replaced_model_directory_is_loaded_again_and_failures_are_not_kept(tmp_path):
    from souk.models.store import seal

    outside = tmp_path / "tagger"
    outside.mkdir()
    (outside / "weights.txt").write_text("old")
    seal(outside, {"kind": "fake"})
    old = model_store.load(tmp_path, "fake", _read, "tagger", unfitted="-")
    assert old["text"] == "old" and model_store.load(tmp_path, "fake", _read, "tagger", unfitted="-") is old
    (outside / "weights.txt").write_text("new")  # changed in place without sealing: refused, never the old copy
    with pytest.raises(ModelUnavailable, match="model tagger is damaged"):
        model_store.load(tmp_path, "fake", _read, "tagger", unfitted="-")
    seal(outside, {"kind": "fake"})
    assert model_store.load(tmp_path, "fake", _read, "tagger", unfitted="-")["text"] == "new"


def test_a_manifest_of_the_wrong_shape_is_unavailable_naming_the_model(tmp_path):
    store = ModelStore(tmp_path)
    _publish_text(store, "fake", "w", params=[1, 2])

    def strict(path: Path) -> dict:
        return dict(**read_model_manifest(path)["params"])  # a list where a table belongs: TypeError

    with pytest.raises(ModelUnavailable, match=r"model fake-1: malformed \(TypeError\)"):
        model_store.load(tmp_path, "fake", strict, unfitted="-")
    with pytest.raises(ModelError, match="a pinned fake model is a name like fake-2"):
        model_store.resolve(tmp_path, "fake", ["fake-1"])  # type: ignore[arg-type]
