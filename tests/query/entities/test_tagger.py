import json

import pytest

pytest.importorskip("torch")

from souk.errors import ModelError  # noqa: E402
from souk.query.entities.data import read_tagged  # noqa: E402
from souk.query.entities.network import NetworkConfig  # noqa: E402
from souk.query.entities.tagger import Tagger  # noqa: E402
from souk.training.tagger import TrainConfig, evaluate_tagger, new_tagger, train_tagger  # noqa: E402
from support import DATA, FIXTURES, needs_shared  # noqa: E402

SMALL = NetworkConfig(char_dim=16, bigram_dim=16, segment_dim=4, hidden=24, dropout=0.0)


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    """A tagger that learned the 12 hand-made fixture titles by heart, saved to a directory."""
    sentences = read_tagged(FIXTURES / "ner-mini.jsonl")
    config = TrainConfig(epochs=40, batch_size=4, lr=2e-2, patience=40, seed=1, members=1)
    result = train_tagger(sentences, sentences, config, SMALL)
    path = result.tagger.save(tmp_path_factory.mktemp("ner") / "tagger")
    return result, path


def test_learns_the_fixture_and_keeps_the_best_epoch(mini):
    result, path = mini
    assert result.best.dev.f1 == pytest.approx(1.0)
    assert result.best.epoch == max(result.history, key=lambda h: h.dev.f1).epoch
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["kind"] == "ner-tagger" and manifest["seed"] == 1 and manifest["dev"]["f1"] == pytest.approx(1.0)
    assert (
        manifest["tags"][0] == "O"
        and {"chars", "bigrams"} == set(manifest["vocab"])
        and manifest["lexicon"]["words"]["HPPX"] == 11
    )
    assert {"model.pt", "chars.json", "bigrams.json", "lexicon.json", "manifest.json"} <= {
        p.name for p in path.iterdir()
    }


def test_tag_spans_point_into_the_raw_query(mini):
    tagger = Tagger.load(mini[1])
    text = "华为 ＭＡＴＥ60 手机壳"  # spaces and full-width letters the training titles never had
    found = {(e.type, e.text, e.value) for e in tagger.tag(text)}
    assert found == {("HPPX", "华为", "华为"), ("XH", "ＭＡＴＥ60", "mate60"), ("HCCX", "手机壳", "手机壳")}
    for e in tagger.tag(text):
        assert text[e.start:e.end] == e.text and e.source == "tagger" and 0.5 < e.score <= 1.0
    assert tagger.tag("") == [] and tagger.tag("   ") == []


def test_round_trip_gives_the_same_predictions(mini, tmp_path):
    result, path = mini
    loaded = Tagger.load(path)
    sentences = read_tagged(FIXTURES / "ner-mini.jsonl")
    units = [s.chars for s in sentences]
    assert loaded.predict(units) == result.tagger.predict(units)
    again = Tagger.load(loaded.save(tmp_path / "copy"))  # saving over a tagger replaces it
    again.save(tmp_path / "copy")
    assert Tagger.load(tmp_path / "copy").predict(units) == loaded.predict(units)
    assert evaluate_tagger(again, sentences).f1 == pytest.approx(1.0)


def test_load_and_save_refuse_other_directories(mini, tmp_path):
    with pytest.raises(ModelError, match="not a souk model directory"):
        Tagger.load(tmp_path)
    (tmp_path / "manifest.json").write_text('{"kind": "encoder"}')
    with pytest.raises(ModelError, match="holds a 'encoder' model, not a 'ner-tagger' model"):
        Tagger.load(tmp_path)
    with pytest.raises(ModelError, match="not a souk ner-tagger"):
        Tagger.load(mini[1]).save(tmp_path)


@needs_shared("data", "taobao-ner", "train.jsonl")
def test_short_training_on_real_titles_lowers_loss_and_beats_an_untrained_model():
    train = read_tagged(DATA / "taobao-ner" / "train.jsonl")[:200]
    dev = read_tagged(DATA / "taobao-ner" / "dev.jsonl")[:100]
    config = TrainConfig(epochs=2, batch_size=8, lr=2e-2, seed=7, members=1)
    network = NetworkConfig(char_dim=32, bigram_dim=32, segment_dim=8, hidden=48, dropout=0.2)
    untrained = evaluate_tagger(new_tagger(train, config, network), dev).f1
    result = train_tagger(train, dev, config, network)
    assert result.history[1].loss < result.history[0].loss
    assert result.best.dev.f1 > untrained + 0.1, (untrained, result.best.dev.f1)


def test_padding_in_a_batch_does_not_change_a_sentence(mini):
    import torch

    from souk.query.entities.network import Batch

    tagger = Tagger.load(mini[1])
    sentences = read_tagged(FIXTURES / "ner-mini.jsonl")
    encoded = [tagger.features.encode(s.chars) for s in sentences]
    together = tagger.network.emissions(Batch.of(encoded))
    with torch.no_grad():
        for i, e in enumerate(encoded):
            alone = tagger.network.emissions(Batch.of([e]))[0]
            assert torch.allclose(together[i, : len(e.chars)], alone, atol=1e-5)


def test_same_seed_same_weights_including_word2vec(tmp_path):
    import torch

    sentences = read_tagged(FIXTURES / "ner-mini.jsonl")
    text = tmp_path / "queries.txt"
    text.write_text("华为手机壳 苹果 钢化膜\n小米充电宝\n耐克跑步鞋 索尼耳机\n" * 5, encoding="utf-8")
    config = TrainConfig(epochs=2, batch_size=4, seed=5, pretrain=[str(text)], pretrain_min_count=1, members=1)
    first, second = (train_tagger(sentences, sentences, config, SMALL).tagger.network.state_dict() for _ in range(2))
    assert all(torch.equal(first[k], second[k]) for k in first)
    other = train_tagger(sentences, sentences, TrainConfig(epochs=2, batch_size=4, seed=6, members=1),
                         SMALL).tagger.network
    assert not torch.equal(other.state_dict()["out.weight"], first["out.weight"])


def test_an_ensemble_of_seeds_votes_as_one_and_round_trips(tmp_path):
    import torch

    from souk.query.entities.network import Batch, Ensemble

    sentences = read_tagged(FIXTURES / "ner-mini.jsonl")
    config = TrainConfig(epochs=30, batch_size=4, lr=2e-2, patience=30, seed=1, members=2)
    result = train_tagger(sentences, sentences, config, SMALL)
    network = result.tagger.network
    assert isinstance(network, Ensemble) and len(network.members) == 2
    a, b = network.members
    assert not torch.equal(a.out.weight, b.out.weight)  # two seeds, two networks
    encoded = Batch.of([result.tagger.features.encode(s.chars) for s in sentences])
    with torch.no_grad():
        assert torch.allclose(network.emissions(encoded), (a.emissions(encoded) + b.emissions(encoded)) / 2)
    assert torch.allclose(network.crf.transitions, (a.crf.transitions + b.crf.transitions) / 2)
    assert result.best.dev.f1 == pytest.approx(1.0)
    path = result.tagger.save(tmp_path / "tagger")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["members"] == 2 and [m["seed"] for m in manifest["training"]["members"]] == [1, 2]
    loaded = Tagger.load(path)
    units = [s.chars for s in sentences]
    assert isinstance(loaded.network, Ensemble) and loaded.predict(units) == result.tagger.predict(units)


@pytest.mark.parametrize("resealed", [False, True], ids=["hash mismatch", "resealed"])
def test_a_damaged_or_pickled_tagger_is_unavailable_and_never_unpickled(mini, tmp_path, resealed):
    """model.pt cut short, or replaced by a pickle that would create a directory if run: refused, one line."""
    import os
    import pickle
    import shutil

    from souk.errors import ModelUnavailable
    from souk.models.store import seal

    class Payload:
        def __reduce__(self):
            return (os.makedirs, (str(tmp_path / "PWNED"),))

    for damage in ("cut", "pickle"):
        path = tmp_path / f"tagger-{damage}"
        shutil.copytree(mini[1], path)
        data = (path / "model.pt").read_bytes()
        (path / "model.pt").write_bytes(data[: len(data) // 3] if damage == "cut" else pickle.dumps(Payload()))
        if resealed:
            seal(path)
        with pytest.raises(ModelUnavailable, match=f"model tagger-{damage}") as e:
            Tagger.load(path)
        assert "\n" not in str(e.value) and str(tmp_path) not in str(e.value)
    assert not (tmp_path / "PWNED").exists()
