import json
from pathlib import Path

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


def test_latin_ngrams_give_run_together_words_pieces_a_query_word_shares():
    feats = text_features("liarliar1997-imdb 电影", latin_grams=3)
    assert feats[:2] == ["liarliar1997", "imdb"]  # the analyzer keeps a run of letters and digits whole
    assert {"##lia", "##iar", "##r19", "##997", "##imd", "##mdb"} <= set(feats) and "##电影" in feats
    assert "##lia" not in text_features("liarliar1997-imdb 电影")  # off unless asked for (models before them)
    assert "##lia" not in text_features("lia 电影", latin_grams=3)  # a word no longer than n is its own term
    assert [f for f in text_features("KUNGPAO", latin_grams=4) if f.startswith("##")] == \
        ["##kung", "##ungp", "##ngpa", "##gpao"]
    assert feature_level("##lia") == 2 and feature_text("##lia") == "lia"


def test_a_model_with_latin_ngrams_reads_them_keeps_them_and_counts_them_in_coverage(tmp_path):
    feats = sorted(set(text_features("liarliar1997 电影", latin_grams=3)))
    model = WordVectors(feats, np.eye(len(feats), dtype=np.float32), np.ones(len(feats), np.float32),
                        meta={"latin_grams": 3})
    assert model.coverage("liar") == 1.0  # an unknown word whose n-grams are all known
    assert model.coverage("liarxyz") == pytest.approx(2 / 5)  # 2 of its 5 trigrams (lia, iar) known
    assert model.encode(["liar"]).any() and not model.encode(["qqqq"]).any()
    model.save(tmp_path / "m")
    loaded = WordVectors.load(tmp_path / "m")
    assert loaded.latin_grams == 3 and loaded.text_features("liar") == model.text_features("liar")
    older = WordVectors(feats, model.vectors, model.weights)  # saved before latin n-grams: none read
    assert older.latin_grams == 0 and older.coverage("liar") == 0.0 and not older.encode(["liar"]).any()
    info = json.loads((tmp_path / "m" / "word_vectors.json").read_text())
    for hostile in (7, "3", True, -1, 3.0):
        (tmp_path / "m" / "word_vectors.json").write_text(json.dumps({**info, "latin_grams": hostile}))
        with pytest.raises(ModelError, match="latin_grams"):
            WordVectors.load(tmp_path / "m")


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


def test_the_user_dictionary_travels_with_the_model_and_legacy_paths_find_the_index_own(tmp_path):
    import shutil

    index = tmp_path / "index"
    (index / "analysis").mkdir(parents=True)
    words = index / "analysis" / "words-1.txt"
    words.write_text("感冒咳嗽 100\n", encoding="utf-8")
    feats = sorted(set(text_features("小孩感冒咳嗽", user_dict=str(words))))
    assert "感冒咳嗽" in feats
    model = WordVectors(feats, np.eye(len(feats), dtype=np.float32), np.ones(len(feats), np.float32),
                        user_dict=str(words))
    model.save(index / "models" / "wordvec-1")
    saved = json.loads((index / "models" / "wordvec-1" / "word_vectors.json").read_text())
    assert saved["user_dict"] == "user_dict.txt"
    moved = tmp_path / "elsewhere" / "index"
    shutil.move(str(index), str(moved))  # the index moves; nothing is left where it was fitted
    loaded = WordVectors.load(moved / "models" / "wordvec-1")
    assert "感冒咳嗽" in loaded.text_features("小孩感冒咳嗽") and loaded.coverage("感冒咳嗽") == 1.0
    # a model saved before the copy named the index's list by its absolute path: found in its own index
    info_path = moved / "models" / "wordvec-1" / "word_vectors.json"
    info = json.loads(info_path.read_text())
    info_path.write_text(json.dumps({**info, "user_dict": str(words)}))
    (moved / "models" / "wordvec-1" / "user_dict.txt").unlink()
    assert Path(WordVectors.load(moved / "models" / "wordvec-1").user_dict) == moved / "analysis" / "words-1.txt"
    for hostile in ("../../analysis/words-1.txt", "a\x00b", 7, "/nowhere/shop-dict.txt"):
        info_path.write_text(json.dumps({**info, "user_dict": hostile}))
        with pytest.raises(ModelError, match="fit it again") as caught:
            WordVectors.load(moved / "models" / "wordvec-1")
        assert "analysis" not in str(caught.value) and "nowhere" not in str(caught.value)


def test_gensim_fasttext_gives_every_feature_a_vector():
    sentences = [[f for f in text_features(t) if feature_level(f) == 0] for t in TITLES]
    wv = train_gensim(sentences, dim=16, epochs=2, seed=1, workers=1)
    feats = ["手机", "#手", "##手机", "从未见过的词"]
    vecs = feature_vectors(wv, feats)
    assert vecs.shape == (4, 16) and np.isfinite(vecs).all() and (np.linalg.norm(vecs, axis=1) > 0).all()
    with pytest.raises(ModelError, match="no text"):
        train_gensim([[]])
