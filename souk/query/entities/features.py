"""What the tagger reads at each character: the character, its left and right character bigrams,
and its place in a jieba word (B/M/E/S). Plain Python (no torch), shared by training and tagging.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

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


class Lexicon:
    """Known entity strings by type (from training titles); `marks` says, for each unit, in which
    entity strings it stands first (B), inside (M), last (E) or alone (S), as a 4 x types bit mask.
    Every occurrence counts, overlapping ones too; the network learns how far to trust them."""

    def __init__(self, words: Mapping[str, Iterable[str]]):
        self.types = sorted(words)
        self.words = {t: sorted(set(words[t])) for t in self.types}
        self._trie: Any = {}  # nested dicts: unit -> node; "" -> the bits of the types ending here
        for k, t in enumerate(self.types):
            for w in self.words[t]:
                node = self._trie
                for c in w:
                    node = node.setdefault(c, {})
                node[""] = node.get("", 0) | (1 << k)

    @property
    def width(self) -> int:
        return 4 * len(self.types)

    def marks(self, units: Sequence[str]) -> list[int]:
        out = [0] * len(units)
        for i in range(len(units)):
            node, j = self._trie, i
            while j < len(units) and (node := node.get(units[j])) is not None:
                j += 1
                for k in range(len(self.types)):
                    if node.get("", 0) >> k & 1:
                        if j - i == 1:
                            out[i] |= 1 << (4 * k + 3)  # S
                        else:
                            out[i] |= 1 << (4 * k)  # B
                            out[j - 1] |= 1 << (4 * k + 2)  # E
                            for m in range(i + 1, j - 1):
                                out[m] |= 1 << (4 * k + 1)  # M
        return out


@dataclass(frozen=True)
class Encoded:
    """Feature ids of one sentence."""

    chars: list[int]
    bigrams: list[int]  # len(chars) + 1 ids: left bigram of i at i, right bigram at i + 1
    segments: list[int]
    lexicon: list[int]  # bit masks of `Lexicon.marks` (all 0 without a lexicon)


@dataclass
class Featurizer:
    """Turns a sentence of units into feature ids; the same object serves training and tagging."""

    chars: Vocab
    bigrams: Vocab
    segments: bool = True
    lexicon: Lexicon | None = None

    def encode(self, units: Sequence[str], lexicon: Lexicon | None = None) -> Encoded:
        """Feature ids of one sentence; `lexicon` overrides the featurizer's (training folds)."""
        segs = segments(units) if self.segments else [4] * len(units)
        lexicon = lexicon or self.lexicon
        marks = lexicon.marks(units) if lexicon is not None else [0] * len(units)
        return Encoded(self.chars.ids(units), self.bigrams.ids(bigrams(units)), segs, marks)
