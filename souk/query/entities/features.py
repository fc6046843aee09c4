"""What the tagger reads at each character: the character, its left and right character bigrams,
and its place in a jieba word (B/M/E/S). Plain Python (no torch), shared by training and tagging.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

PAD, UNK = 0, 1
BOS, EOS = "\x02", "\x03"  # sentence boundaries inside bigrams
SEGMENTS = ("B", "M", "E", "S")  # ids 1..4; 0 is padding


@dataclass
class Vocab:
    """Tokens to ids; 0 is padding and 1 the unknown token."""

    tokens: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._ids = {t: i + 2 for i, t in enumerate(self.tokens)}

    @classmethod
    def build(cls, tokens: Iterable[str]) -> "Vocab":
        return cls(list(dict.fromkeys(tokens)))

    def __len__(self) -> int:
        return len(self.tokens) + 2

    def __contains__(self, token: str) -> bool:
        return token in self._ids

    def ids(self, tokens: Iterable[str]) -> list[int]:
        get = self._ids.get
        return [get(t, UNK) for t in tokens]


def bigrams(units: Sequence[str]) -> list[str]:
    """The len+1 bigrams around the units: (BOS u0), (u0 u1), ..., (u_last EOS). The left bigram
    of unit i is bigrams[i], its right bigram bigrams[i + 1]."""
    padded = [BOS, *units, EOS]
    return [a + b for a, b in zip(padded, padded[1:])]


def segments(units: Sequence[str]) -> list[int]:
    """B/M/E/S ids of each unit inside the jieba word holding it (all S if jieba loses characters)."""
    from souk.analysis.tokenize import _jieba

    text = "".join(units)
    out: list[int] = []
    for word in _jieba(None).cut(text, HMM=True):
        n = len(word)
        out.extend([4] if n == 1 else [1, *[2] * (n - 2), 3])
    return out if len(out) == len(units) else [4] * len(units)


@dataclass(frozen=True)
class Encoded:
    """Feature ids of one sentence."""

    chars: list[int]
    bigrams: list[int]  # len(chars) + 1 ids: left bigram of i at i, right bigram at i + 1
    segments: list[int]


def encode(units: Sequence[str], chars: Vocab, bigram_vocab: Vocab, use_segments: bool = True) -> Encoded:
    """Feature ids of one sentence of units."""
    segs = segments(units) if use_segments else [4] * len(units)
    return Encoded(chars.ids(units), bigram_vocab.ids(bigrams(units)), segs)
