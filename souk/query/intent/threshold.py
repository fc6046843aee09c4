"""Out-of-scope decisions: below a confidence threshold, a prediction becomes `oos`.

The threshold is chosen on out-of-fold predictions of the training data (never on the split that is
reported) to maximise the accuracy expected on traffic where a share `oos_share` of the queries is out
of scope: `(1 - oos_share) * in_scope_accuracy + oos_share * oos_recall`. The share is a stated prior
about traffic, not learned: training sets hold few oos examples (CLINC150: 0.7%) while its test set holds
18%; the default 0.2 follows the latter. Ties go to the lowest threshold.

Without oos examples (a catalog's titles labeled with their categories, a TSV of intents only) the
out-of-scope queries are stood in for by held-out confidence: each training row's out-of-fold
probabilities with its own class removed (renormalized), i.e. what the model says about a query of a
kind it was never taught, as a softmax model does when that class's score is gone. The threshold is
chosen on the rows plus these stand-ins by the same objective, and capped at the out-of-fold confidence
below which only `MAX_IN_SCOPE_REJECTED` of the in-scope rows fall (stand-ins are near misses, harder
than real unrelated queries). Measured on catalogs (`souk intent train --index`, README): a flipkart
category model rejects 88% of unrelated queries (openfoodfacts titles, CLINC150 utterances) for a 3
point in-scope accuracy loss, where threshold 0 rejected none.
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


DEFAULT_OOS_SHARE = 0.2


MAX_IN_SCOPE_REJECTED = 0.1  # without oos examples: at most this share of in-scope rows below the threshold


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    in_scope_accuracy: float
    oos_recall: float | None  # None without oos examples (or stand-ins)
    oos_share: float = DEFAULT_OOS_SHARE
    oos_from: str = "examples"  # "examples" or "held-out classes" (stand-ins, see `choose_threshold_without_oos`)

    @property
    def objective(self) -> float:
        """Expected accuracy at the assumed oos share (in-scope accuracy alone without oos examples)."""
        if self.oos_recall is None:
            return self.in_scope_accuracy
        return (1 - self.oos_share) * self.in_scope_accuracy + self.oos_share * self.oos_recall

    def to_dict(self) -> dict[str, float | str | None]:
        return {"threshold": self.threshold, "in_scope_accuracy": self.in_scope_accuracy,
                "oos_recall": self.oos_recall, "oos_share": self.oos_share, "objective": self.objective,
                "oos_from": self.oos_from}


def choose_threshold(probs: np.ndarray, classes: np.ndarray, y_true: np.ndarray,
                     oos_share: float = DEFAULT_OOS_SHARE) -> ThresholdChoice:
    """The threshold maximising `(1 - oos_share) * in_scope_accuracy + oos_share * oos_recall` over every
    cut between observed confidences (exact, one sort: rejecting the k least confident rows, k = 0..n)."""
    if not 0.0 < oos_share < 1.0:
        raise ValueError(f"oos_share must be strictly between 0 and 1, got {oos_share}")
    y_true = np.asarray(y_true, dtype=object)
    labels, confidence = decide(probs, classes, 0.0)
    is_oos = y_true == OOS
    n_oos, n_in = int(is_oos.sum()), int((~is_oos).sum())
    correct_in = (~is_oos) & (labels == y_true)
    if n_oos == 0 or n_in == 0:
        return ThresholdChoice(0.0, float(correct_in.sum() / max(n_in, 1)), None if n_oos == 0 else 1.0, oos_share)
    order = np.argsort(confidence, kind="stable")
    conf = confidence[order]
    # rejecting the first k rows (k = 0..n) loses their in-scope hits and wins their oos rows not already `oos`
    lost = np.r_[0, np.cumsum(correct_in[order])]
    won = np.r_[0, np.cumsum(is_oos[order] & (labels[order] != OOS))]
    accuracy = (correct_in.sum() - lost) / n_in
    recall = ((is_oos & (labels == OOS)).sum() + won) / n_oos
    cut_ok = np.r_[True, conf[1:] > conf[:-1], True]  # a cut must fall between two different confidences
    objective = np.where(cut_ok, (1 - oos_share) * accuracy + oos_share * recall, -np.inf)
    k = int(np.argmax(objective))
    if k == 0:
        threshold = 0.0
    elif k == len(conf):
        threshold = float(np.nextafter(conf[-1], np.inf))
    else:
        threshold = float((conf[k - 1] + conf[k]) / 2)
    return ThresholdChoice(threshold, float(accuracy[k]), float(recall[k]), oos_share)


def without_own_class(probs: np.ndarray, classes: np.ndarray, y_true: np.ndarray) -> np.ndarray:
    """Each row's probabilities with its true class removed and the rest renormalized (all zero where
    nothing is left): stand-ins for queries of a kind the model was never taught."""
    column = {c: i for i, c in enumerate(np.asarray(classes, dtype=object).tolist())}
    out = np.array(probs, dtype=np.float64, copy=True)
    own = np.array([column.get(label, -1) for label in np.asarray(y_true, dtype=object).tolist()])
    rows = np.flatnonzero(own >= 0)
    out[rows, own[rows]] = 0.0
    total = out.sum(axis=1, keepdims=True)
    np.divide(out, total, out=out, where=total > 0)
    return out.astype(np.float32)


def choose_threshold_without_oos(probs: np.ndarray, classes: np.ndarray, y_true: np.ndarray,
                                 oos_share: float = DEFAULT_OOS_SHARE,
                                 max_rejected: float = MAX_IN_SCOPE_REJECTED) -> ThresholdChoice:
    """The threshold for data without oos examples: `choose_threshold` on the out-of-fold rows plus
    their held-out-class stand-ins (`without_own_class`), capped so that at most `max_rejected` of the
    rows' out-of-fold confidences fall below it. `oos_recall` is the stand-ins' recall."""
    y = np.asarray(y_true, dtype=object)
    if len(y) == 0 or len(classes) < 3:  # two classes: a stand-in is always sure of the other one
        return choose_threshold(probs, classes, y, oos_share)
    stand_ins = without_own_class(probs, classes, y)
    both = choose_threshold(np.r_[probs, stand_ins], classes, np.r_[y, np.full(len(y), OOS, dtype=object)], oos_share)
    cap = float(np.quantile(probs.max(axis=1), max_rejected))
    threshold = min(both.threshold, cap)
    labels, _ = decide(probs, classes, threshold)
    stand_in_labels, _ = decide(stand_ins, classes, threshold)
    return ThresholdChoice(threshold, float(np.mean(labels == y)), float(np.mean(stand_in_labels == OOS)), oos_share,
                           oos_from="held-out classes")
