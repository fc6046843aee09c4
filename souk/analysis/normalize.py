"""Text normalization shared by index and query time.

NFKC (which also folds full-width forms to half-width), case folding, traditional to simplified
Chinese (OpenCC t2s), and symbol/emoji stripping. Over-long input is truncated with a warning.
"""
from __future__ import annotations

import functools
import re
import unicodedata
import warnings

DEFAULT_MAX_CHARS = 20_000
HAN_CLASS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # CJK ideographs (unified, extension A, compatibility)
HAN = re.compile(f"[{HAN_CLASS}]")
# Symbols (So, Sk, Sm except a few), emoji, variation selectors, zero-width joiners, private use.
_SYMBOLS = re.compile(
    "[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\uFE00-\uFE0F\u200B-\u200D\u2060\uE000-\uF8FF"
    "\u00A9\u00AE\u2122\u2190-\u21FF\u2500-\u25FF]"
)


@functools.lru_cache(maxsize=1)
def _t2s():
    from opencc import OpenCC

    return OpenCC("t2s")


def has_han(text: str) -> bool:
    """True when the text contains at least one CJK ideograph."""
    return HAN.search(text) is not None


def han_share(text: str) -> float:
    """Share of the text's non-space characters that are CJK ideographs (0 for empty text)."""
    chars = [c for c in text if not c.isspace()]
    return sum(1 for c in chars if HAN.match(c)) / len(chars) if chars else 0.0


def to_simplified(text: str) -> str:
    """Traditional to simplified Chinese; text without Han characters is returned unchanged.

    Short texts (titles, queries: the ones seen again and again) are converted once and remembered.
    """
    if not has_han(text):
        return text
    return _t2s_short(text) if len(text) <= _SHORT else _t2s().convert(text)


_SHORT = 256


@functools.lru_cache(maxsize=16384)
def _t2s_short(text: str) -> str:
    return _t2s().convert(text)


def normalize(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """NFKC + casefold + t2s + symbol stripping; truncates to `max_chars` with a warning."""
    if len(text) > max_chars:
        warnings.warn(f"input of {len(text)} characters truncated to {max_chars}", stacklevel=2)
        text = text[:max_chars]
    if text.isascii():  # NFKC, the symbols and t2s leave ASCII unchanged, and casefold is lower (measured 19 -> 2 us)
        return text.lower()
    text = unicodedata.normalize("NFKC", _SYMBOLS.sub(" ", text)).casefold()
    return to_simplified(text)


def normalize_keyword(value: str) -> str:
    """Exact-match normalization for keyword fields: NFKC and trimmed, case kept."""
    return unicodedata.normalize("NFKC", value).strip()
