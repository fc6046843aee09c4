"""Batched analysis gives every text exactly the terms `Analyzer.terms` gives it."""
import warnings

import pytest
from hypothesis import given, settings, strategies as st

from souk.analysis.batch import analyze_columns, joined_terms
from souk.analysis.filters import _KEPT
from souk.analysis.registry import ANALYZERS, get_analyzer
from support import FUZZ_SCALE

TEXTS = [
    "Solar panels convert sunlight", "", None, "THE running Runners ran", "iphone 15 手机壳", "garden 嘉頓蛋糕 75g",
    "Café crème brûlée — naïve résumé", "β-blockers reduce mortality (p<0.05)", "a\x00b nul inside", "x" * 30,
    "  spaces\tand\nnewlines  ", "the of and", "ＦＵＬＬ－ＷＩＤＴＨ ｔｅｘｔ", "emoji 😀 stripped",
    "50% off_sale 3-pack", "Huawei Mate40Pro 2gallons b00x4wh2ya", "华为mate40pro手机壳 Café2",
]


@pytest.mark.parametrize("name", [*ANALYZERS.names(), "standard+parts", "simple+parts", "cjk_bigram+parts"])
def test_every_text_gets_the_terms_of_the_one_text_path(name):
    analyzer = get_analyzer(name)
    expected = [None if t is None else " ".join(analyzer.terms(t)) for t in TEXTS]
    assert joined_terms(analyzer, TEXTS) == expected
    assert joined_terms(analyzer, [t for t in TEXTS if t is not None and t.isascii() and "\x00" not in t]) == \
        [e for t, e in zip(TEXTS, expected) if t is not None and t.isascii() and "\x00" not in t]  # all-ASCII path


def test_over_long_text_is_truncated_as_the_one_text_path_truncates_it():
    analyzer = get_analyzer("standard", max_chars=20)
    texts = ["short text", "a much longer text that goes past the limit"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert joined_terms(analyzer, texts) == [" ".join(analyzer.terms(t)) for t in texts]


def test_a_full_table_starts_afresh_without_losing_the_batch(monkeypatch):
    import souk.analysis.batch as batch

    monkeypatch.setattr(batch, "_STEMS_MAX", 3)
    analyzer = get_analyzer("standard")
    texts = ["running runners ran quickly", "jumping foxes jumped", "running again"]
    _KEPT.clear()
    assert joined_terms(analyzer, texts) == [" ".join(analyzer.terms(t)) for t in texts]
    assert joined_terms(analyzer, texts[::-1]) == [" ".join(analyzer.terms(t)) for t in texts[::-1]]


def test_columns_follow_their_specs():
    specs = [("standard", "title"), ("simple", "title"), ("cjk_bigram", "text")]
    columns = [["Running shoes", None], ["Running shoes", None], ["蛋糕店 cakes", "面包"]]
    assert analyze_columns(specs, None, columns) == [["run shoe", None], ["running shoes", None],
                                                     ["蛋糕 糕店 cake", "面包"]]


@settings(max_examples=60 * FUZZ_SCALE, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=40),
                          st.text(alphabet="abc XYZ 019-_.,éß嘉頓\x00\t", max_size=40)), max_size=8))
def test_any_batch_matches_the_one_text_path(texts):
    for name in ("standard", "simple", "cjk_bigram", "standard+parts", "simple+parts"):
        analyzer = get_analyzer(name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert joined_terms(analyzer, texts) == [None if t is None else " ".join(analyzer.terms(t)) for t in texts]
