"""Intent classification figures: accuracy, in-scope accuracy, oos recall, macro-F1."""
from __future__ import annotations

import pytest
from sklearn.metrics import f1_score

from support import FIXTURES

from souk.evaluation.intent import evaluate_intents, intent_scores
from souk.query.intent import IntentConfig, IntentModel, read_labeled_tsv


def test_intent_scores_by_hand_and_against_sklearn():
    y_true = ["a", "a", "b", "oos", "oos", "b"]
    y_pred = ["a", "oos", "b", "oos", "a", "a"]
    s = intent_scores(y_true, y_pred)
    assert s["accuracy"] == pytest.approx(3 / 6)
    assert s["in_scope_accuracy"] == pytest.approx(2 / 4)  # an `oos` answer to an intent query is wrong
    assert s["oos_recall"] == pytest.approx(1 / 2)
    assert s["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert intent_scores(["a", "b"], ["a", "a"])["oos_recall"] is None
    with pytest.raises(ValueError, match="2 items but y_pred has 1"):
        intent_scores(["a", "b"], ["a"])


def test_evaluate_intents_follows_the_threshold():
    data = read_labeled_tsv(FIXTURES / "intents.tsv")
    model = IntentModel.train(data, IntentConfig(features={"char": {}}, train_oos="without"))
    strict = evaluate_intents(model, data, threshold=1.0)  # nothing reaches probability 1: everything is oos
    assert strict["oos_recall"] == 1.0 and strict["in_scope_accuracy"] == 0.0 and strict["threshold"] == 1.0
    loose = evaluate_intents(model, data, threshold=0.0)
    assert loose["oos_recall"] == 0.0 and loose["in_scope_accuracy"] > 0.9 and loose["queries"] == 46
