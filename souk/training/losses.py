"""Losses on plain score tensors, so the maths is testable without a model.

Groups are rows: column 0 holds the positive, the other columns its negatives (lower grades or
unjudged candidates from recall). Misuse: passing a group whose column 0 is not the best document;
`listwise` would then teach the opposite order.
"""
from __future__ import annotations

from typing import Callable

LossFn = Callable[..., "object"]


def _check_groups(scores, labels=None) -> None:
    if scores.dim() != 2 or scores.shape[1] < 2:
        raise ValueError(f"scores must be (groups, 1 positive + >=1 negatives), got shape {tuple(scores.shape)}")
    if labels is not None and labels.shape != scores.shape:
        raise ValueError(f"labels {tuple(labels.shape)} must have the shape of scores {tuple(scores.shape)}")


def listwise(scores, labels=None):
    """Softmax cross-entropy of the positive (column 0) against its group."""
    import torch

    _check_groups(scores, labels)
    return torch.nn.functional.cross_entropy(scores.float(),
                                             torch.zeros(len(scores), dtype=torch.long, device=scores.device))


def pointwise(scores, labels):
    """Binary cross-entropy of every score against its grade scaled to 0..1."""
    import torch

    _check_groups(scores, labels)
    return torch.nn.functional.binary_cross_entropy_with_logits(scores.float(), labels.float())


def margin_mse(positive, negative, teacher_margin):
    """Margin-MSE distillation (Hofstätter et al. 2020): the mean squared difference between the student's
    margin `positive - negative` and the teacher's, over the rows whose teacher margin is finite (NaN: the
    teacher did not score that pair; no such row gives a zero that still carries a gradient).
    Misuse: margins on different scales (map the teacher's onto the student's first)."""
    import torch

    if not (positive.shape == negative.shape == teacher_margin.shape) or positive.dim() != 1:
        raise ValueError(f"margin_mse wants three equal 1-d shapes, got {tuple(positive.shape)}, "
                         f"{tuple(negative.shape)}, {tuple(teacher_margin.shape)}")
    taught = torch.isfinite(teacher_margin)
    if not bool(taught.any()):
        return (positive.float() - negative.float()).sum() * 0.0
    diff = (positive.float() - negative.float())[taught] - teacher_margin.float()[taught]
    return (diff * diff).mean()


def temperature_at(step: int, steps: int, start: float, ceiling: float) -> float:
    """An InfoNCE temperature that starts small and grows linearly to `ceiling` by the last of `steps`
    training steps (then stays there): sharp early (the hardest negatives count most), smoother later.
    Misuse: a ceiling below the start (the schedule would shrink)."""
    if not 0 < start <= ceiling:
        raise ValueError(f"temperature schedule: expected 0 < start <= ceiling, got {start} and {ceiling}")
    return start + (ceiling - start) * min(1.0, max(step, 0) / max(steps - 1, 1))


LOSSES: dict[str, LossFn] = {"listwise": listwise, "pointwise": pointwise}
