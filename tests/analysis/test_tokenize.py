from hypothesis import given, settings, strategies as st

from souk.analysis.tokenize import tokenize


def texts(tokens):
    return [t.text for t in tokens]


def test_mixed_script_iphone_case():
    out = texts(tokenize("iphone 15 手机壳"))
    assert out[:2] == ["iphone", "15"]
    assert "手机" in out


def test_mixed_script_brand_and_weight():
    out = texts(tokenize("garden 嘉顿蛋糕 75g"))
    assert out[0] == "garden" and out[-1] == "75g"
    assert "蛋糕" in out


def test_jieba_search_mode_emits_sub_words():
    out = texts(tokenize("中华人民共和国"))
    assert "中华" in out and "中华人民共和国" in out


def test_bigram_fallback():
    assert texts(tokenize("蛋糕粉", han="bigram")) == ["蛋糕", "糕粉"]
    assert texts(tokenize("茶", han="bigram")) == ["茶"]


def test_spans_point_into_input():
    text = "wireless 蓝牙耳机"
    for tok in tokenize(text):
        assert text[tok.start : tok.end] == tok.text


def test_user_dictionary(tmp_path):
    d = tmp_path / "dict.txt"
    d.write_text("孖宝蛋糕 100 n\n", encoding="utf-8")
    assert "孖宝蛋糕" in texts(tokenize("孖宝蛋糕", user_dict=str(d)))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab xyz-_.'9手机Ａ\u00e9", max_size=40),
       st.lists(st.text(alphabet="abx9'", min_size=1, max_size=3), min_size=1, max_size=3))
def test_words_starting_is_tokenize_filtered_by_prefix(text, prefixes):
    from souk.analysis.tokenize import words_starting

    want = [t for t in tokenize(text, "skip") if t.text.startswith(tuple(prefixes))]
    assert words_starting(text, tuple(prefixes)) == want


def test_word_parts_split_letter_and_digit_runs_of_short_mixes_only():
    from souk.analysis.tokenize import MAX_PARTS, word_parts

    assert word_parts("mate40pro") == [("mate", 0, 4), ("40", 4, 6), ("pro", 6, 9)]
    assert word_parts("café2") == [("café", 0, 4), ("2", 4, 5)]
    assert word_parts("iphone") == word_parts("2024") == []
    assert word_parts("a1b2c3d4") == [] and MAX_PARTS == 4  # a code: whole only
