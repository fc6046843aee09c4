"""Intent classification quality: accuracy, in-scope accuracy, out-of-scope recall and macro-F1.

In-scope accuracy counts the queries labeled with an intent (an `oos` answer is wrong for them); oos
recall is the share of `oos` queries answered `oos`; macro-F1 averages over every label, `oos` included.
Misuse: quoting in-scope accuracy alone; a model that never says `oos` maximises it.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from souk.evaluation.metrics import accuracy, macro_f1
from souk.query.intent import OOS, IntentModel, LabeledQueries


def intent_scores(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, float | None]:
    """The four figures; `oos_recall` is None when no query is labeled `oos` (and in-scope likewise)."""
    y_true, y_pred = np.asarray(y_true, dtype=object), np.asarray(y_pred, dtype=object)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {len(y_true)} items but y_pred has {len(y_pred)}")
    oos = y_true == OOS
    return {
        "accuracy": accuracy(y_true, y_pred),
        "in_scope_accuracy": accuracy(y_true[~oos], y_pred[~oos]) if (~oos).any() else None,
        "oos_recall": accuracy(y_true[oos], y_pred[oos]) if oos.any() else None,
        "macro_f1": macro_f1(y_true.astype(str), y_pred.astype(str)),
    }


def evaluate_intents(model: IntentModel, data: LabeledQueries, threshold: float | None = None) -> dict[str, Any]:
    """`intent_scores` of the model's predictions on labeled queries, with the counts behind them."""
    predicted = [p.label for p in model.predict(data.texts, k=1, threshold=threshold)]
    return {**intent_scores(data.labels, predicted), "queries": len(data), "oos": data.oos_count,
            "threshold": model.threshold if threshold is None else threshold}
