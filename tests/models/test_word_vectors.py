import json

import numpy as np
import pytest

from souk.errors import ModelError
from souk.models.word_vectors import (WordVectors, feature_level, feature_text, feature_vectors, first_component,
                                      sif_weights, text_features, train_gensim)
from support import FIXTURES

TITLES = [json.loads(line)["text"] for line in (FIXTURES / "zh-mini" / "corpus.jsonl").open(encoding="utf-8")]


def test_features_are_terms_then_han_characters_and_bigrams():
    feats = text_features("iPhone 手机壳")  # the standard analyzer stems Latin words
    assert feats[:1] == ["iphon"] and "手机" in feats
    assert {"#手", "#机", "#壳", "##手机", "##机壳"} <= set(feats)
    assert [feature_level(f) for f in ("手机", "#手", "##手机")] == [0, 1, 2]
    assert [feature_text(f) for f in ("手机", "#手", "##手机")] == ["手机", "手", "手机"]


def _model(dim: int = 8) -> WordVectors:
    feats = sorted({f for t in TITLES for f in text_features(t)})
    rng = np.random.default_rng(0)
    return WordVectors(feats, rng.normal(size=(len(feats), dim)).astype(np.float32), np.ones(len(feats), np.float32))


def test_sentence_vectors_are_unit_length_and_unknown_text_is_zero():
    model = _model()
    x = model.encode([TITLES[0], "zzzz qqqq", ""])
    assert x.shape == (3, 8)
    assert np.isclose(np.linalg.norm(x[0]), 1.0) and not x[1].any() and not x[2].any()
    # the same text gives the same vector; a related title is nearer than an unrelated one on shared pieces
    again = model.encode([TITLES[0]])[0]
    assert np.allclose(again, x[0], atol=1e-6)


def test_sif_weights_fall_with_frequency_and_pc_removal_orthogonalizes():
    w = sif_weights(np.array([1, 10, 1000]))
    assert w[0] > w[1] > w[2] > 0
    model = _model()
    vecs = model.encode(TITLES)
    model.pc = first_component(vecs)
    assert np.isclose(np.linalg.norm(model.pc), 1.0)
    assert np.abs(model.encode(TITLES) @ model.pc).max() < 1e-5


def test_coverage_counts_known_terms_by_characters():
    model = _model()
    assert model.coverage(TITLES[3]) == 1.0
    assert model.coverage("qwertyuiop") == 0.0
    assert 0.0 < model.coverage(TITLES[3] + " qwertyuiop") < 1.0


def test_round_trip_and_unreadable_directories(tmp_path):
    model = _model()
    model.pc = first_component(model.encode(TITLES))
    model.save(tmp_path / "m")
    loaded = WordVectors.load(tmp_path / "m")
    assert loaded.features == model.features and loaded.analyzer == model.analyzer
    assert np.allclose(loaded.encode(TITLES[:5]), model.encode(TITLES[:5]), atol=2e-3)  # vectors kept as float16
    (tmp_path / "m" / "word_vectors.json").write_text('{"format": 99, "kind": "word_vectors"}')
    with pytest.raises(ModelError, match="format"):
        WordVectors.load(tmp_path / "m")
    with pytest.raises(ModelError, match="fit it again"):
        WordVectors.load(tmp_path / "absent")


def test_gensim_fasttext_gives_every_feature_a_vector():
    sentences = [[f for f in text_features(t) if feature_level(f) == 0] for t in TITLES]
    wv = train_gensim(sentences, dim=16, epochs=2, seed=1, workers=1)
    feats = ["手机", "#手", "##手机", "从未见过的词"]
    vecs = feature_vectors(wv, feats)
    assert vecs.shape == (4, 16) and np.isfinite(vecs).all() and (np.linalg.norm(vecs, axis=1) > 0).all()
    with pytest.raises(ModelError, match="no text"):
        train_gensim([[]])
