"""A linear-chain CRF over tag emissions (torch): log-likelihood by the forward algorithm, best
path by Viterbi, per-position marginals by differentiating log Z.

Shapes: emissions (batch, length, tags), mask (batch, length) bool with every sequence's mask a
prefix of ones (pad on the right). `allowed` ((tags, tags) bool, from -> to, plus start/end
vectors) forbids transitions such as O -> I-X with a large negative score, both when training and
decoding, so decoded paths are always well-formed BIO. Misuse: left-padded batches.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

FORBIDDEN = -1e4


class CRF(nn.Module):
    """Transition, start and end scores for `num_tags` tags."""

    allowed: torch.Tensor  # buffers (registered in __init__)
    allowed_start: torch.Tensor
    allowed_end: torch.Tensor

    def __init__(self, num_tags: int, allowed: torch.Tensor | None = None,
                 allowed_start: torch.Tensor | None = None, allowed_end: torch.Tensor | None = None):
        super().__init__()
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))
        self.start = nn.Parameter(torch.zeros(num_tags))
        self.end = nn.Parameter(torch.zeros(num_tags))
        ones = torch.ones(num_tags, dtype=torch.bool)
        self.register_buffer("allowed", allowed if allowed is not None
                             else torch.ones(num_tags, num_tags, dtype=torch.bool))
        self.register_buffer("allowed_start", allowed_start if allowed_start is not None else ones.clone())
        self.register_buffer("allowed_end", allowed_end if allowed_end is not None else ones.clone())

    def _scores(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        def mask(x: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
            return torch.where(ok, x, torch.full_like(x, FORBIDDEN))

        return (
            mask(self.transitions, self.allowed),
            mask(self.start, self.allowed_start),
            mask(self.end, self.allowed_end),
        )

    def path_score(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Score of the given tag paths, (batch,)."""
        trans, start, end = self._scores()
        maskf = mask.to(emissions.dtype)
        emit = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # (B, L)
        score = start[tags[:, 0]] + (emit * maskf).sum(1)
        score = score + (trans[tags[:, :-1], tags[:, 1:]] * maskf[:, 1:]).sum(1)
        last = tags.gather(1, (mask.sum(1) - 1).unsqueeze(1)).squeeze(1)
        return score + end[last]

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log Z of each sequence by the forward algorithm, (batch,)."""
        trans, start, end = self._scores()
        alpha = start + emissions[:, 0]
        for t in range(1, emissions.shape[1]):
            step = torch.logsumexp(alpha.unsqueeze(2) + trans + emissions[:, t].unsqueeze(1), dim=1)
            alpha = torch.where(mask[:, t].unsqueeze(1), step, alpha)
        return torch.logsumexp(alpha + end, dim=1)

    def neg_log_likelihood(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean over the batch of -log p(tags | emissions)."""
        return (self.log_partition(emissions, mask) - self.path_score(emissions, tags, mask)).mean()

    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        """The highest-scoring tag path of each sequence (Viterbi), cut to its length."""
        trans, start, end = self._scores()
        score = start + emissions[:, 0]
        back = []
        for t in range(1, emissions.shape[1]):
            best, idx = (score.unsqueeze(2) + trans).max(dim=1)
            step = best + emissions[:, t]
            on = mask[:, t].unsqueeze(1)
            score = torch.where(on, step, score)
            back.append(torch.where(on, idx, torch.arange(self.num_tags).expand_as(idx)))  # identity when padded
        last = (score + end).argmax(dim=1)
        paths = [last]
        for idx in reversed(back):
            last = idx.gather(1, last.unsqueeze(1)).squeeze(1)
            paths.append(last)
        full = torch.stack(paths[::-1], dim=1).tolist()
        return [row[:n] for row, n in zip(full, mask.sum(1).tolist())]

    def marginals(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """p(tag at position t) for every position and tag, (batch, length, tags)."""
        with torch.enable_grad():
            e = emissions.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.log_partition(e, mask).sum(), e)
        return grad


def bio_constraints(tags: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(allowed transitions, allowed starts, allowed ends) for BIO tags: `I-X` only after `B-X` or `I-X`."""
    n = len(tags)
    allowed = torch.ones(n, n, dtype=torch.bool)
    start = torch.ones(n, dtype=torch.bool)
    for j, to in enumerate(tags):
        if to.startswith("I-"):
            start[j] = False
            for i, frm in enumerate(tags):
                allowed[i, j] = frm[2:] == to[2:] and frm[:2] in ("B-", "I-")
    return allowed, start, torch.ones(n, dtype=torch.bool)
