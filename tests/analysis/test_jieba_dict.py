"""jieba's dictionary from souk's memory-mapped cache: the same words as jieba's own dictionary, built once,
refused when it is not ours or damaged."""
import os

import numpy as np
import pytest

from souk.analysis import jieba_dict
from souk.analysis.jieba_dict import FrozenFreq, build_cache, load_cached, new_tokenizer

TEXTS = ["我来到北京清华大学", "小孩感冒过后久咳嗽该吃什么药", "嘉顿蛋糕 iphone 15 手机壳", "中华人民共和国成立了"]


def frozen(words: dict[str, int]) -> FrozenFreq:
    keys = sorted(w.encode() for w in words)
    return FrozenFreq(np.array(keys, dtype=f"S{max(map(len, keys))}"),
                      np.array([words[k.decode()] for k in keys], dtype=np.int64))


def test_frozen_freq_answers_like_a_dict_and_takes_writes_as_an_overlay():
    f = frozen({"中": 0, "中华": 5, "华": 2})
    assert "中华" in f and f["中华"] == 5 and f.get("中华人") is None and f.get("x", 7) == 7
    assert "中华人" not in f and "" not in f and 3 not in f
    f["中华人"] = 0  # jieba's add_word writes prefixes as 0
    f["华"] = 9
    del f["中"]
    assert f["中华人"] == 0 and f["华"] == 9 and "中" not in f
    assert f.materialize() == {"中华": 5, "华": 9, "中华人": 0} == dict(f.items())
    with pytest.raises(KeyError):
        f["nope"]


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    os.environ["SOUK_CACHE_DIR"] = str(root)
    try:
        new_tokenizer()  # builds the cache
        yield root
    finally:
        os.environ.pop("SOUK_CACHE_DIR", None)


@pytest.mark.slow
def test_cached_dictionary_segments_as_jieba_does(cache_root):
    import jieba

    ours = new_tokenizer()
    assert isinstance(ours.FREQ, FrozenFreq)  # loaded from the cache, not rebuilt
    ref = jieba.Tokenizer()
    ref.initialize()
    for text in TEXTS:
        assert list(ours.tokenize(text, mode="search")) == list(ref.tokenize(text, mode="search"))


def test_user_dictionary_words_land_in_the_overlay(cache_root, tmp_path):
    user = tmp_path / "user.txt"
    user.write_text("清华大学城 10 n\n")
    tok = new_tokenizer(str(user))
    assert "清华大学城" in [w for w, _, _ in tok.tokenize("我在清华大学城", mode="search")]


def _dict_file():
    import jieba
    from pathlib import Path

    return str(Path(jieba.__file__).parent / jieba.DEFAULT_DICT_NAME)


def test_a_cache_that_is_not_ours_or_damaged_is_refused(cache_root, tmp_path):
    assert load_cached(_dict_file(), cache_root) is not None
    folder = cache_root / "jieba"
    os.chmod(folder, 0o770 | 0o002)  # writable by others: anyone could have planted it
    try:
        assert load_cached(_dict_file(), cache_root) is None
    finally:
        os.chmod(folder, 0o700)
    other = tmp_path / "other"
    assert build_cache({"中": 1, "中华": 2}, 3, _dict_file(), other)
    keys = next((other / "jieba").glob("*.keys.npy"))
    keys.write_bytes(keys.read_bytes()[:40])  # truncated
    assert load_cached(_dict_file(), other) is None
    (other / "jieba" / "manifest.json").write_text("{not json")
    assert load_cached(_dict_file(), other) is None


def test_bulk_segmentation_switches_to_a_plain_dict(cache_root, monkeypatch):
    monkeypatch.setattr(jieba_dict, "MATERIALIZE", 10)
    tok = new_tokenizer()
    for text in TEXTS:
        list(tok.tokenize(text, mode="search"))
    assert type(tok.FREQ) is dict and tok.FREQ["中华"] > 0
