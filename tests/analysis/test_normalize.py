import warnings

from souk.analysis.normalize import normalize, normalize_keyword, to_simplified


def test_full_width_and_case_fold():
    assert normalize("ＡＢＣ１２３　Ｓｈｏｅｓ") == "abc123 shoes"


def test_traditional_to_simplified():
    assert normalize("嘉頓蛋糕") == "嘉顿蛋糕"
    assert to_simplified("plain english") == "plain english"


def test_symbols_and_emoji_become_spaces():
    out = normalize("Shoes😀™ ★ best")
    assert "😀" not in out and "™" not in out and "★" not in out
    assert out.split() == ["shoes", "best"]


def test_truncation_warns():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = normalize("a" * 50, max_chars=10)
    assert out == "a" * 10
    assert any("truncated" in str(w.message) for w in caught)


def test_keyword_normalization_keeps_case():
    assert normalize_keyword("  Ｇarden ") == "Garden"
