from souk.query.syntax import parse_query


def test_operators():
    p = parse_query('usb-c cable "fast charging" -wireless +braided')
    assert p.free == "usb-c cable"
    assert p.phrases == ["fast charging"] and p.required == ["braided"] and p.excluded == ["wireless"]


def test_plain_query_has_no_operators():
    p = parse_query("c++ primer 5th-edition")
    assert not p.has_operators and p.free == "c++ primer 5th-edition"


def test_unbalanced_quote_is_plain_text():
    p = parse_query('12" pizza tray')
    assert not p.has_operators and p.free == "12 pizza tray"


def test_signs_before_digits_are_text():
    p = parse_query("E2f-1, -2, -3 TKO cells +1 nucleosomes")
    assert not p.has_operators
