"""Highlighted snippets: the best window of the original text around matched query terms."""
from __future__ import annotations

import functools
import unicodedata

from souk.analysis.normalize import has_han, to_simplified
from souk.analysis.registry import Analyzer


def highlight(text: str, terms: set[str], analyzer: Analyzer, width: int = 160, tag: str = "mark") -> str | None:
    """A snippet of `text` with matched terms wrapped in <tag>; None when nothing matches.

    Offsets come from a per-character normalization so they map back onto the original text.
    """
    if not terms or not text:
        return None
    head = text[: analyzer.max_chars]
    chinese = any(has_han(t) for t in terms)
    roots = tuple(_stem_root(t) for t in terms)
    quick = unicodedata.normalize("NFKC", head).casefold()  # cheap: no term could match, skip the analysis
    if chinese:
        quick = to_simplified(quick)
    if not any(r in quick for r in roots):
        return None
    folded, origin = _fold_with_offsets(head)
    spans = [(origin[t.start], origin[t.end - 1] + 1) for t in analyzer.tokens(folded, han=chinese, prefixes=roots)
             if t.text in terms]
    if not spans:
        return None
    start = _best_window(spans, width)
    end = min(len(text), start + width)
    out, pos = [], start
    for s, e in spans:
        if s < pos or e > end:
            continue
        out.append(_escape(text[pos:s]))
        out.append(f"<{tag}>{_escape(text[s:e])}</{tag}>")
        pos = e
    out.append(_escape(text[pos:end]))
    return ("…" if start > 0 else "") + "".join(out) + ("…" if end < len(text) else "")


def _stem_root(term: str) -> str:
    """A prefix every surface form of an analyzed term contains (stems keep the word's start)."""
    return term[:2] if len(term) > 3 else term[:-1] or term


def _fold_with_offsets(text: str) -> tuple[str, list[int]]:
    """`text` normalized character by character (NFKC, casefold, simplified Chinese) and, for each folded
    character, the index of the original character it came from (plus one past the end)."""
    if text.isascii():  # the common case: folding is lower-casing and keeps every offset
        return text.lower(), list(range(len(text) + 1))
    chars, origin = [], []
    for i, ch in enumerate(text):
        for c in _fold_char(ch):
            chars.append(c)
            origin.append(i)
    origin.append(len(text))
    folded = "".join(chars)
    simplified = to_simplified(folded)  # one conversion per text; per character where lengths would drift
    if len(simplified) != len(folded):
        simplified = "".join(to_simplified(c) if len(to_simplified(c)) == 1 else c for c in folded)
    return simplified, origin


@functools.lru_cache(maxsize=65536)
def _fold_char(ch: str) -> str:
    return unicodedata.normalize("NFKC", ch).casefold()


def _best_window(spans: list[tuple[int, int]], width: int) -> int:
    best, best_count = spans[0][0], 0
    for s, _ in spans:
        count = sum(1 for t, e in spans if s <= t and e <= s + width)
        if count > best_count:
            best, best_count = s, count
    return max(0, best - width // 5)


def _escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
