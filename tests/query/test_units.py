import pytest

from souk.query.units import find_quantities, parse_number, quantity_spans


@pytest.mark.parametrize("text, value, unit, term", [
    ("70%", 70, "%", "70pct"),
    ("500ml", 500, "ml", "500ml"),
    ("2kg", 2, "kg", "2kg"),
    ("20v", 20, "v", "20v"),
    ("12 oz", 12, "oz", "12oz"),
    ("3/4 in", 0.75, "in", "0p75in"),
    ("1-1/2 in", 1.5, "in", "1p5in"),
    ("500毫升", 500, "ml", "500ml"),
    ("75克", 75, "g", "75g"),
    ("1.25l", 1.25, "l", "1p25l"),
    ("8'", 8, "ft", "8ft"),
])
def test_quantities_are_recognised(text, value, unit, term):
    (q,) = find_quantities(f"x {text} y")
    assert (q.text, q.value, q.unit, q.term) == (text, pytest.approx(value), unit, term)
    assert q.start == 2 and q.end == 2 + len(text)


def test_equal_amounts_share_a_key():
    (a,), (b,) = find_quantities("0.5 l"), find_quantities("500ml")
    assert a.key == b.key == ("volume", 500.0)
    assert find_quantities("1kg")[0].key == find_quantities("1000 g")[0].key


def test_model_numbers_and_bare_numbers_are_not_quantities():
    assert find_quantities("xr500 m12 s24") == []
    assert find_quantities("2 in 1 tool") == []  # "in" before a number is a word
    assert find_quantities("20 v") == []  # single-letter units only when glued
    assert find_quantities("mdf 3/4") == []
    assert find_quantities("12000 btuair") == []


def test_several_quantities_and_their_spans():
    text = "dewalt 20v drill 3/4 in chuck 70% 12 oz 2 pack"
    assert [text[s:e] for s, e in quantity_spans(text)] == ["20v", "3/4 in", "70%", "12 oz", "2 pack"]


def test_parse_number():
    assert parse_number("3/4") == 0.75 and parse_number("1 1/2") == 1.5 and parse_number("1,000") == 1000
    assert parse_number(".5") == 0.5
