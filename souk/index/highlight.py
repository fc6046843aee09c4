"""Highlighted text: the whole text (a title) or, for long text, the best window of it around matched
query terms, starting at a word boundary. Each matched word is marked whole: overlapping matches (a
Chinese query analyzed as 古力 and 朱古力) are merged into one span."""
from __future__ import annotations

import functools
import unicodedata

from souk.analysis.normalize import has_han, to_simplified
from souk.analysis.registry import Analyzer


WHOLE_CHARS = 300  # text up to this long is shown whole (titles); longer text as a window of `width`
_BOUNDARY_LOOKBACK = 24


def highlight(text: str, terms: set[str], analyzer: Analyzer, width: int = 160, tag: str = "mark",
              whole_chars: int = WHOLE_CHARS) -> str | None:
    """`text` with matched terms wrapped in <tag>, whole when it is at most `whole_chars` long, else a
    window of about `width` characters; None when nothing matches.

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
    spans = _merge(sorted((origin[t.start], origin[t.end - 1] + 1)
                          for t in analyzer.tokens(folded, han=chinese, prefixes=roots) if t.text in terms))
    if not spans:
        return None
    if len(text) <= whole_chars:
        start, end = 0, len(text)
    else:
        start = _word_start(text, _best_window(spans, width), spans)
        end = _word_end(text, min(len(text), start + width))
    out, pos = [], start
    for s, e in spans:
        if s < pos or e > end:
            continue
        out.append(_escape(text[pos:s]))
        out.append(f"<{tag}>{_escape(text[s:e])}</{tag}>")
        pos = e
    out.append(_escape(text[pos:end]))
    return ("…" if start > 0 else "") + "".join(out) + ("…" if end < len(text) else "")


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted spans with overlapping ones joined (adjacent words stay separate marks)."""
    out: list[tuple[int, int]] = []
    for s, e in spans:
        if out and s < out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def _is_boundary(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch)[0] in "PZ"


def _word_start(text: str, start: int, spans: list[tuple[int, int]]) -> int:
    """`start` moved back to the beginning of its word or clause (after a space or punctuation), or
    forward past a cut Latin word, never past the first match."""
    if start <= 0:
        return 0
    for i in range(start, max(0, start - _BOUNDARY_LOOKBACK), -1):
        if _is_boundary(text[i - 1]):
            return i
    first = next((s for s, _ in spans if s >= start), start)
    i = start
    while i < first and text[i - 1].isascii() and text[i - 1].isalnum() and text[i].isalnum():
        i += 1
    return i


def _word_end(text: str, end: int) -> int:
    """`end` moved forward to the end of a cut Latin word (a few characters at most)."""
    limit = min(len(text), end + 16)
    while (
        end < limit
        and text[end - 1].isascii()
        and text[end - 1].isalnum()
        and text[end].isascii()
        and text[end].isalnum()
    ):
        end += 1
    return end


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
