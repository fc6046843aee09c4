import pytest

from souk.analysis.values import (canonical_path, decimal_of, guess_hierarchy, hierarchy_paths, hierarchy_prefixes,
                                  is_currency, parse_number)


@pytest.mark.parametrize("text, value, unit", [
    ("$11.99", 11.99, "$"), ("¥1,299", 1299.0, "¥"), ("￥1,299", 1299.0, "¥"), ("HK$1,299.50", 1299.5, "HK$"),
    ("1.299,50 €", 1299.5, "€"), ("12,50", 12.5, None), ("-$5", -5.0, "$"), ("USD 12", 12.0, "USD"),
    ("₹1,299", 1299.0, "₹"), ("1 299,00 €", 1299.0, "€"), ("42", 42.0, None), ("630元", 630.0, "元"),
])
def test_prices_as_shops_write_them(text, value, unit):
    assert parse_number(text) == (pytest.approx(value), unit)


@pytest.mark.parametrize("text", ["abc", "12 34", "inf", "$", "1,2,3", "$5€", "--5", "12.5.6"])
def test_what_is_not_a_number_is_refused(text):
    with pytest.raises(ValueError, match="number"):
        parse_number(text)


def test_the_decimal_mark_decides_ambiguous_text():
    assert parse_number("1.299")[0] == pytest.approx(1.299)
    assert parse_number("1.299", ",")[0] == 1299.0
    assert parse_number("1,299", ".")[0] == 1299.0
    assert parse_number("1,299", ",")[0] == pytest.approx(1.299)
    with pytest.raises(ValueError, match="decimal mark"):
        parse_number("1,2", ".")  # a thousands group has three digits
    assert decimal_of("1.299,50") == "," and decimal_of("1,299.50") == "." and decimal_of("12") is None


def test_currencies_are_known_by_symbol_and_code():
    assert (
        is_currency("$")
        and is_currency("EUR")
        and is_currency("HK$")
        and not is_currency("ml")
        and not is_currency(None)
    )


def test_hierarchy_paths_and_prefixes():
    assert hierarchy_paths('["Clothing >> Women\'s Clothing >> Shorts"]', ">>") == ["Clothing > "
                                                                                    "Women's Clothing > Shorts"]
    assert hierarchy_paths("美妆 | 护肤 | 面霜", "|") == ["美妆 > 护肤 > 面霜"]
    assert hierarchy_paths("A >> B", ">") == ["A > B"]  # empty levels dropped: '>' also splits '>>'
    assert hierarchy_prefixes(["A > B > C", "A > D"]) == ["A", "A > B", "A > B > C", "A > D"]
    assert canonical_path("toys>>games", ">>") == "toys > games" and canonical_path("美妆>护肤", "|") == "美妆 > 护肤"


def test_guess_hierarchy_finds_the_separator():
    assert guess_hierarchy(["A >> B", "C >> D >> E", "F >> G"]) == ">>"
    assert guess_hierarchy(["美妆 | 护肤", "美妆 | 彩妆 | 口红", "食品 | 饼干"]) == "|"
    assert guess_hierarchy(["plain words", "more words", "and some"]) is None
