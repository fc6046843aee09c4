"""Character normalization shared by the gazetteer and the tagger, keeping offsets into the query.

Each character goes through souk's analysis normalizer on its own (NFKC, so full-width becomes
half-width; case folding; traditional -> simplified; symbols become spaces), so every normalized
character can be traced back to the query character it came from.
"""
from __future__ import annotations

import functools

from souk.analysis.normalize import HAN, normalize


@functools.lru_cache(maxsize=1 << 16)
def char_key(char: str) -> str:
    """Normalized form of one character: usually one character, "" never, " " for space and symbols."""
    out = normalize(char)
    return out if out.strip() else " "


def normalize_with_offsets(text: str) -> tuple[str, list[int]]:
    """The per-character normalized text and, for each of its characters, its index in `text`."""
    chars: list[str] = []
    offsets: list[int] = []
    for i, c in enumerate(text):
        for n in char_key(c):
            chars.append(n)
            offsets.append(i)
    return "".join(chars), offsets


def is_word_char(char: str) -> bool:
    """Letters and digits of scripts written with spaces between words (so not Han)."""
    return char.isalnum() and not HAN.match(char)


def canonical_with_offsets(text: str) -> tuple[str, list[int]]:
    """Normalized text where punctuation becomes a space, space runs collapse to one space, and
    spaces next to a Han character vanish: `Coca-Cola` and `coca  cola` read alike, as do
    `可口 可乐` and `可口可乐`."""
    norm, offsets = normalize_with_offsets(text)
    chars = [c if c.isalnum() else " " for c in norm]
    following = [" "] * (len(chars) + 1)  # the next non-space character after position i
    for i in range(len(chars) - 1, -1, -1):
        following[i] = following[i + 1] if chars[i] == " " else chars[i]
    out: list[str] = []
    out_offsets: list[int] = []
    for i, c in enumerate(chars):
        if c == " ":
            prev, nxt = (out[-1] if out else " "), following[i + 1]
            if prev == " " or nxt == " " or HAN.match(prev) or HAN.match(nxt):
                continue
        out.append(c)
        out_offsets.append(offsets[i])
    return "".join(out), out_offsets


def canonical(text: str) -> str:
    """`canonical_with_offsets` without the offsets: the comparison key of a phrase."""
    return canonical_with_offsets(text)[0]
