import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from souk.analysis import ANALYZERS, get_analyzer
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
