"""User dictionaries are untrusted input: `souk.analysis.user_words` checks every line before jieba sees it."""
from __future__ import annotations

import pytest

from souk.analysis.user_words import format_words, parse_words, read_words
from souk.errors import ConfigError
from souk.limits import MAX_USER_DICT_BYTES, MAX_USER_WORD_CHARS


def test_words_counts_and_tags_are_read():
    words = parse_words("手机壳 100 n\n\n  蓝牙耳机\n云南白药 7\nwifi路由器 nz\n".encode())
    assert words == [("手机壳", 100, "n"), ("蓝牙耳机", None, None), ("云南白药", 7, None), ("wifi路由器", None, "nz")]
    assert parse_words(format_words(words).encode()) == words


@pytest.mark.parametrize("data, message", [
    (b"\xff\xfe bad", "not UTF-8"),
    ("手机壳 1 n extra".encode(), "line 1: expected"),
    ("ok\n手机壳 0".encode(), "line 2: the count"),
    ("手机壳 n!".encode(), "tag"),
    (("字" * (MAX_USER_WORD_CHARS + 1)).encode(), "1 to"),
    ("手机\x00壳".encode(), "control"),
    (b"a" * (MAX_USER_DICT_BYTES + 1), "larger than"),
], ids=["utf8", "fields", "count", "tag", "length", "control", "size"])
def test_bad_dictionaries_are_refused_by_line_without_their_content(data, message):
    with pytest.raises(ConfigError, match=message) as e:
        parse_words(data, "user dictionary d.txt")
    assert "手机" not in str(e.value)


def test_a_file_is_read_and_jieba_keeps_its_words(tmp_path):
    from souk.analysis.jieba_dict import new_tokenizer

    path = tmp_path / "words.txt"
    path.write_text("手机壳\n")
    assert read_words(path) == [("手机壳", None, None)]
    assert new_tokenizer(None).lcut("手机壳") != ["手机壳"]
    assert new_tokenizer(str(path)).lcut("手机壳") == ["手机壳"]
    path.write_bytes(b"\xff")
    with pytest.raises(ConfigError, match="not UTF-8"):
        new_tokenizer(str(path))
    with pytest.raises(ConfigError, match="cannot be read"):
        read_words(tmp_path / "missing.txt")
