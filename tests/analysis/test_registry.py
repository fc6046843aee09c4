import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from souk.analysis import ANALYZERS, get_analyzer
from souk.analysis.normalize import has_han
from souk.analysis.registry import analyzer_name
from souk.errors import ConfigError


def test_standard_stems_and_drops_stopwords():
    assert get_analyzer("standard").terms("The Running Shoes of the year") == ["run", "shoe", "year"]


def test_product_words_are_not_stopwords():
    assert get_analyzer("standard").terms("deck over") == ["deck", "over"]


def test_traditional_query_matches_simplified_terms():
    a = get_analyzer("standard")
    assert a.terms("嘉頓蛋糕") == a.terms("嘉顿蛋糕")


def test_fast_path_equals_token_path():
    a = get_analyzer("standard")
    text = "Lightweight running shoes, men's 2.5 size"
    assert a.terms(text) == [t.text for t in a.tokens(text)]


def test_word_parts_give_a_mixed_word_whole_then_its_parts():
    a = get_analyzer("standard+parts")
    assert a.parts and not get_analyzer("standard").parts
    assert a.terms("Huawei Mate40Pro 2Gallons") == ["huawei", "mate", "40", "pro", "2", "gallon",
                                                    "mate40pro", "2gallons"]  # (the wholes at the end)
    assert a.terms("iphone 12 case") == get_analyzer("standard").terms("iphone 12 case")  # plain words: unchanged
    assert a.terms("b00x4wh2ya") == ["b00x4wh2ya"]  # a code of many runs stays whole
    toks = a.tokens("华为mate40pro手机")
    assert [(t.text, t.start, t.end, t.whole) for t in toks if not has_han(t.text)] == [
        ("mate", 2, 6, False), ("40", 6, 8, False), ("pro", 8, 11, False), ("mate40pro", 2, 11, True)]
    assert a.terms("华为mate40pro手机") == [t.text for t in toks]
    assert [t.text for t in a.tokens("Mate40Pro case", han=False, prefixes=("pro", "ca"))] == ["pro", "case"]


def test_parts_are_named_by_suffix_and_never_split_a_keyword():
    assert analyzer_name("standard", True) == "standard+parts" and analyzer_name("standard", False) == "standard"
    assert analyzer_name("keyword", True) == "keyword"
    with pytest.raises(ConfigError):
        get_analyzer("nosuch+parts")


def test_keyword_analyzer_is_one_term():
    assert get_analyzer("keyword").terms(" Garden  Co ") == ["garden_co"]


def test_simple_keeps_stopwords_and_forms():
    assert get_analyzer("simple").terms("The Shoes") == ["the", "shoes"]


def test_unknown_analyzer_lists_known_names():
    with pytest.raises(ConfigError) as e:
        get_analyzer("klingon")
    for name in ANALYZERS.names():
        assert name in str(e.value)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=127), max_size=80))
def test_property_ascii_text_takes_the_quick_path_to_the_same_terms(text):
    # " é" sends the text down the general path (NFKC, casefold, the Unicode word pattern); é stays one last term
    for name in ("standard", "simple", "cjk_bigram"):
        an = get_analyzer(name)
        assert an.terms(text) == an.terms(text + " é")[:-1]
