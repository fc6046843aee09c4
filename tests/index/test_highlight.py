"""Highlighting maps matches in normalized text back onto the original characters."""
from souk.analysis.registry import get_analyzer
from souk.index.highlight import _fold_with_offsets, highlight

STANDARD = get_analyzer("standard")


def test_ascii_text_marks_stemmed_matches():
    got = highlight("Running Shoes & Socks", {"run", "sock"}, STANDARD)
    assert got == "<mark>Running</mark> Shoes &amp; <mark>Socks</mark>"


def test_full_width_and_case_folded_text_keeps_original_characters():
    got = highlight("ＮＩＫＥ Air Shoes", {"nike"}, STANDARD)
    assert got == "<mark>ＮＩＫＥ</mark> Air Shoes"


def test_traditional_chinese_matches_simplified_terms():
    got = highlight("陳年紹興花彫酒 640毫升", {"绍兴"}, STANDARD)
    assert got is not None and "<mark>紹興</mark>" in got


def test_no_match_is_none():
    assert highlight("Running Shoes", {"apple"}, STANDARD) is None
    assert highlight("陳年紹興花彫酒", {"apple"}, STANDARD) is None
    assert highlight("", {"apple"}, STANDARD) is None


def test_ascii_fast_path_agrees_with_the_per_character_fold():
    for text in ["Hello World 42", "A-B_c.D", "MiXeD CaSe"]:
        folded, origin = _fold_with_offsets(text)
        assert folded == text.casefold() and origin == list(range(len(text) + 1))
    folded, origin = _fold_with_offsets("ﬁne Ａ")  # a ligature folds to two characters of one origin
    assert folded == "fine a" and origin[:2] == [0, 0] and origin[-1] == 5


def test_mixed_script_text_marks_latin_and_han_terms():
    text = "Apple iPhone 15 手機殼"
    assert highlight(text, {"iphon"}, STANDARD) == "Apple <mark>iPhone</mark> 15 手機殼"
    got = highlight(text, {"手机", "iphon"}, STANDARD)
    assert "<mark>iPhone</mark>" in got and "<mark>手機</mark>" in got


def test_overlapping_chinese_matches_mark_the_whole_word():
    terms = set(STANDARD.terms("朱古力餅乾"))  # jieba gives 古力 and 朱古力 for the unknown word
    got = highlight("嘉頓 朱古力餅乾 200克", terms, STANDARD)
    assert got == "嘉頓 <mark>朱古力</mark><mark>餅乾</mark> 200克"


def test_titles_are_shown_whole_and_long_text_starts_at_a_word():
    title = "MAC魅可 子弹头口红 Milan） 雾感 哑光 持久 " * 6  # about 180 characters: whole
    got = highlight(title, set(STANDARD.terms("口红")), STANDARD)
    assert not got.startswith("…") and not got.endswith("…") and got.count("<mark>口红</mark>") == 6
    long = "filler words here " * 30 + "a sturdy longboard for beginners " + "more filler text " * 30
    got = highlight(long, set(STANDARD.terms("longboard")), STANDARD)
    assert got.startswith("…") and got.endswith("…") and "<mark>longboard</mark>" in got
    inner = got.strip("…")
    assert inner.split()[0] in ("filler", "words", "here") and inner.split()[-1] in ("more", "filler", "text")
