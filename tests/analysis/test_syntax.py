from souk.analysis.syntax import parse_query


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


def test_cheap_operator_check_agrees_with_the_parser():
    from souk.analysis.syntax import may_have_operators

    for text in ['a "b c"', "x -y", "+z w", "usb-c cable", "E2f-1, -2", "c++ 5+", "plain words"]:
        assert may_have_operators(text) or not parse_query(text).has_operators, text
    assert not may_have_operators("usb-c cable e2f-1, -2 +1")
