"""Out-of-scope decisions: below a confidence threshold, a prediction becomes `oos`.

The threshold is chosen on out-of-fold predictions of the training data (never on the split that is
reported) to maximise `in_scope_accuracy + oos_recall`: each in-scope query counts 1/n_in and each
out-of-scope query 1/n_oos, so the rare oos class weighs as much as all intents together. Ties go to
the lowest threshold. Without oos examples the objective is undefined and the threshold is 0.
Misuse: tuning the threshold on the dev or test split whose figures are then reported.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from souk.query.intent.data import OOS


def decide(probs: np.ndarray, classes: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(labels, confidences): the top class per row, `OOS` where its probability is below `threshold`."""
    top = probs.argmax(axis=1)
    confidence = probs[np.arange(len(probs)), top]
    labels = np.asarray(classes, dtype=object)[top]
    labels[confidence < threshold] = OOS
    return labels, confidence


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    in_scope_accuracy: float
    oos_recall: float | None  # None without oos examples

    @property
    def objective(self) -> float:
        return self.in_scope_accuracy + (self.oos_recall or 0.0)

    def to_dict(self) -> dict[str, float | None]:
        return {"threshold": self.threshold, "in_scope_accuracy": self.in_scope_accuracy,
                "oos_recall": self.oos_recall, "objective": self.objective}


def choose_threshold(probs: np.ndarray, classes: np.ndarray, y_true: np.ndarray) -> ThresholdChoice:
    """The threshold maximising in-scope accuracy + oos recall over every cut between observed confidences
    (exact, one sort: rejecting the k least confident rows for k = 0..n)."""
    y_true = np.asarray(y_true, dtype=object)
    labels, confidence = decide(probs, classes, 0.0)
    is_oos = y_true == OOS
    n_oos, n_in = int(is_oos.sum()), int((~is_oos).sum())
    correct_in = (~is_oos) & (labels == y_true)
    if n_oos == 0 or n_in == 0:
        return ThresholdChoice(0.0, float(correct_in.sum() / max(n_in, 1)), None if n_oos == 0 else 1.0)
    order = np.argsort(confidence, kind="stable")
    conf = confidence[order]
    # rejecting the first k rows (k = 0..n) loses their in-scope hits and wins their oos rows not already `oos`
    lost = np.r_[0, np.cumsum(correct_in[order])]
    won = np.r_[0, np.cumsum(is_oos[order] & (labels[order] != OOS))]
    accuracy = (correct_in.sum() - lost) / n_in
    recall = ((is_oos & (labels == OOS)).sum() + won) / n_oos
    cut_ok = np.r_[True, conf[1:] > conf[:-1], True]  # a cut must fall between two different confidences
    objective = np.where(cut_ok, accuracy + recall, -np.inf)
    k = int(np.argmax(objective))
    if k == 0:
        threshold = 0.0
    elif k == len(conf):
        threshold = float(np.nextafter(conf[-1], np.inf))
    else:
        threshold = float((conf[k - 1] + conf[k]) / 2)
    return ThresholdChoice(threshold, float(accuracy[k]), float(recall[k]))
