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


LOSSES: dict[str, LossFn] = {"listwise": listwise, "pointwise": pointwise}
