"""The tagger network: character, bigram and word-position embeddings plus lexicon bits -> BiLSTM -> CRF (torch)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence, cast

import torch
from torch import nn

from souk.query.entities.crf import CRF, bio_constraints
from souk.query.entities.features import Encoded


@dataclass
class NetworkConfig:
    """Sizes of the network; stored in the model manifest."""

    char_dim: int = 100
    bigram_dim: int = 100
    segment_dim: int = 20
    lexicon_width: int = 0  # 4 x entity types when a lexicon feeds the network
    hidden: int = 128  # per direction
    layers: int = 1
    dropout: float = 0.4

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class BiLstmCrf(nn.Module):
    """Emission scores from embeddings through a BiLSTM, decoded by a BIO-constrained CRF."""

    def __init__(self, config: NetworkConfig, n_chars: int, n_bigrams: int, tags: Sequence[str]):
        super().__init__()
        self.config = config
        # sparse gradients: an optimizer step touches only the rows of this batch's characters
        self.chars = nn.Embedding(n_chars, config.char_dim, padding_idx=0, sparse=True)
        self.bigrams = (
            nn.Embedding(n_bigrams, config.bigram_dim, padding_idx=0, sparse=True) if config.bigram_dim else None
        )
        self.segments = nn.Embedding(5, config.segment_dim, padding_idx=0) if config.segment_dim else None
        width = config.char_dim + 2 * config.bigram_dim + config.segment_dim + config.lexicon_width
        self.dropout = nn.Dropout(config.dropout)
        # two one-way LSTMs, the second over each sentence reversed within its length: exact on
        # right-padded batches without the cost of packed sequences
        lstm_dropout = config.dropout if config.layers > 1 else 0.0
        self.forward_lstm = nn.LSTM(width, config.hidden, num_layers=config.layers, batch_first=True,
                                    dropout=lstm_dropout)
        self.backward_lstm = nn.LSTM(width, config.hidden, num_layers=config.layers, batch_first=True,
                                     dropout=lstm_dropout)
        self.out = nn.Linear(2 * config.hidden, len(tags))
        self.crf = CRF(len(tags), *bio_constraints(tags))

    def emissions(self, batch: "Batch") -> torch.Tensor:
        parts = [self.chars(batch.chars)]
        if self.bigrams is not None:
            parts += [self.bigrams(batch.bigrams[:, :-1]), self.bigrams(batch.bigrams[:, 1:])]
        if self.segments is not None:
            parts.append(self.segments(batch.segments))
        if self.config.lexicon_width:
            bits = torch.arange(self.config.lexicon_width)
            parts.append(((batch.lexicon.unsqueeze(2) >> bits) & 1).to(parts[0].dtype))
        x = self.dropout(torch.cat(parts, dim=-1))
        forward, _ = self.forward_lstm(x)
        backward, _ = self.backward_lstm(_reverse(x, batch.reversal))
        h = torch.cat([forward, _reverse(backward, batch.reversal)], dim=-1)
        return self.out(self.dropout(h))

    def loss(self, batch: "Batch") -> torch.Tensor:
        return self.crf.neg_log_likelihood(self.emissions(batch), batch.tags, batch.mask)

    def decode(self, batch: "Batch", scores: bool = True) -> tuple[list[list[int]], list[list[float]]]:
        """Best tag ids of each sentence and (with `scores`) the marginal probability of each chosen tag."""
        return _decode(self.crf, self.emissions(batch), batch.mask, scores)


class Ensemble(nn.Module):
    """Several BiLstmCrf networks (trained from different seeds) voting as one: their emission scores
    and CRF scores averaged, then one Viterbi pass. Steadier than any single seed on held-out text."""

    def __init__(self, members: Sequence[BiLstmCrf]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one network")
        self.members = nn.ModuleList(members)
        self.config = members[0].config
        first = members[0].crf
        self.crf = CRF(first.num_tags, first.allowed.clone(), first.allowed_start.clone(), first.allowed_end.clone())
        with torch.no_grad():
            for name in ("transitions", "start", "end"):
                getattr(self.crf, name).copy_(torch.stack([getattr(m.crf, name) for m in members]).mean(0))

    def emissions(self, batch: "Batch") -> torch.Tensor:
        return torch.stack([cast(BiLstmCrf, m).emissions(batch) for m in self.members]).mean(0)

    def decode(self, batch: "Batch", scores: bool = True) -> tuple[list[list[int]], list[list[float]]]:
        return _decode(self.crf, self.emissions(batch), batch.mask, scores)


def _decode(
    crf: CRF, emissions: torch.Tensor, mask: torch.Tensor, scores: bool
) -> tuple[list[list[int]], list[list[float]]]:
    paths = crf.decode(emissions, mask)
    if not scores:
        return paths, [[] for _ in paths]
    marginals = crf.marginals(emissions, mask)
    probs = [[float(marginals[b, t, tag]) for t, tag in enumerate(path)] for b, path in enumerate(paths)]
    return paths, probs


@dataclass
class Batch:
    """Right-padded tensors of a few sentences."""

    chars: torch.Tensor  # (B, L)
    bigrams: torch.Tensor  # (B, L + 1)
    segments: torch.Tensor  # (B, L)
    lexicon: torch.Tensor  # (B, L) bit masks
    tags: torch.Tensor  # (B, L), 0 where padded
    mask: torch.Tensor  # (B, L) bool
    lengths: torch.Tensor  # (B,)
    # (B, L): position i of row b reads position reversal[b, i] (each row reversed within its length)
    reversal: torch.Tensor

    @classmethod
    def of(cls, encoded: Sequence[Encoded], tags: Sequence[Sequence[int]] | None = None) -> "Batch":
        n, width = len(encoded), max(len(e.chars) for e in encoded)
        chars = torch.zeros(n, width, dtype=torch.long)
        bigrams = torch.zeros(n, width + 1, dtype=torch.long)
        segs = torch.zeros(n, width, dtype=torch.long)
        lexicon = torch.zeros(n, width, dtype=torch.long)
        tag_ids = torch.zeros(n, width, dtype=torch.long)
        for i, e in enumerate(encoded):
            k = len(e.chars)
            chars[i, :k] = torch.tensor(e.chars)
            bigrams[i, : k + 1] = torch.tensor(e.bigrams)
            segs[i, :k] = torch.tensor(e.segments)
            lexicon[i, :k] = torch.tensor(e.lexicon)
            if tags is not None:
                tag_ids[i, :k] = torch.tensor(tags[i])
        lengths = torch.tensor([len(e.chars) for e in encoded])
        positions = torch.arange(width).unsqueeze(0)
        mask = positions < lengths.unsqueeze(1)
        reversal = torch.where(mask, lengths.unsqueeze(1) - 1 - positions, positions)
        return cls(chars, bigrams, segs, lexicon, tag_ids, mask, lengths, reversal)


def _reverse(x: torch.Tensor, reversal: torch.Tensor) -> torch.Tensor:
    """Each row of (B, L, D) reversed within its length (padding stays at the end)."""
    return x.gather(1, reversal.unsqueeze(2).expand_as(x))
