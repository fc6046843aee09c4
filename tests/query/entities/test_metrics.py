import pytest

from souk.query.entities.entity import bio_spans
from souk.query.entities.metrics import entity_scores, span_scores


def test_bio_spans_read_like_conlleval():
    assert bio_spans(["B-A", "I-A", "O", "B-B", "B-B", "I-B"]) == [("A", 0, 2), ("B", 3, 4), ("B", 4, 6)]
    # an I- that does not continue its type starts a new entity; trailing entity closes at the end
    assert bio_spans(["I-A", "I-B", "I-B", "O", "I-A"]) == [("A", 0, 1), ("B", 1, 3), ("A", 4, 5)]
    assert bio_spans(["O", "O"]) == []


def test_entity_scores_on_a_hand_computed_case():
    gold = [["B-BR", "I-BR", "O", "B-PT", "I-PT"], ["B-PT", "O", "B-XH", "I-XH"]]
    pred = [["B-BR", "I-BR", "O", "B-PT", "O"], ["B-PT", "O", "B-XH", "I-XH"]]
    # gold: BR(0,2) PT(3,5) | PT(0,1) XH(2,4) -> 4 entities; predicted: BR(0,2) PT(3,4) | PT(0,1) XH(2,4)
    # correct: BR, PT(0,1), XH -> tp 3; precision 3/4, recall 3/4
    s = entity_scores(gold, pred)
    assert (s.precision, s.recall, s.f1) == (pytest.approx(0.75), pytest.approx(0.75), pytest.approx(0.75))
    assert s.per_type["PT"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert s.per_type["BR"]["f1"] == 1.0 and s.per_type["XH"]["support"] == 1
    assert list(s.to_dict()) == ["f1", "precision", "recall", "per_type"]


def test_wrong_type_on_the_right_span_is_a_miss_and_empty_input_scores_zero():
    s = span_scores([[("A", 0, 2)]], [[("B", 0, 2)]])
    assert s.f1 == 0.0 and s.per_type["A"]["recall"] == 0.0 and s.per_type["B"]["support"] == 0
    assert entity_scores([["O"]], [["O"]]).f1 == 0.0


def test_lengths_must_agree():
    with pytest.raises(ValueError, match="sequence 0"):
        entity_scores([["O", "O"]], [["O"]])
