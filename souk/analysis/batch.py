"""Analysis of many texts at once, for the writer: the index terms `Analyzer.terms` gives each text, space-joined.

The texts are joined by a separator and split into words in one pass: plain ASCII texts (most of an English
catalog) through a byte table, other texts without Han after normalization through one regular-expression scan;
every word becomes its term through one dictionary (word -> stem, or "" for a stopword) filled as new words appear.
Texts with Han (jieba), over-long texts and the `keyword` analyzer go through `Analyzer.terms` one at a time.
Either way a text gets exactly the terms `Analyzer.terms` gives it.
Misuse: calling it for a single short text (a query): `Analyzer.terms` is the cheaper call there.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Sequence

from souk.analysis.filters import _KEPT, _STEMS_MAX, english_stopwords, kept_stems, stem_words
from souk.analysis.normalize import has_han, normalize
from souk.analysis.tokenize import WORD, word_parts

if TYPE_CHECKING:
    from souk.analysis.registry import Analyzer

_SEP = "\x00"  # parts the texts of a batch: no word holds it, and a text holding it is analyzed alone
_JOIN = f" {_SEP} "
_WORDS = re.compile(rf"{WORD.pattern}|{_SEP}")  # `Analyzer.terms`'s words of normalized text without Han, and _SEP
# ASCII bytes -> themselves for [a-z0-9], A-Z lower-cased, the separator kept, anything else a space: split() then
# gives `Analyzer.terms`'s ASCII words (`[a-z0-9]+` of the lower-cased text), 3x faster than a regex scan
_WORD_BYTES = bytes(c + 32 if 65 <= c <= 90 else c if 97 <= c <= 122 or 48 <= c <= 57 or c == 0 else 32
                    for c in range(256))
# (stopwords, stem, parts) -> word -> term ("" drops the word; with parts, a word mixing letters and digits gives its
# parts' terms, space-joined: `mate 40 pro`)
_TABLES: dict[tuple[bool, bool, bool], dict[str, str]] = {}
_WHOLES: dict[tuple[bool, bool], dict[str, str]] = {}  # (stopwords, stem) -> mixed word -> its own term (`mate40pro`)


def joined_terms(analyzer: "Analyzer", texts: Sequence[str | None]) -> list[str | None]:
    """" ".join(analyzer.terms(text)) of each text (None stays None), computed for the whole batch at once."""
    if analyzer.whole:
        return [None if t is None else " ".join(analyzer.terms(t)) for t in texts]
    given = [t or "" for t in texts]
    joined = _JOIN.join(given)
    longest = max(map(len, given), default=0)
    if joined.isascii() and joined.count(_SEP) == len(texts) - 1 and longest <= analyzer.max_chars:
        parts = _ascii_parts(analyzer, joined)  # the usual case: an English catalog
        return [None if t is None else p.strip(" ") for t, p in zip(texts, parts)]
    out: list[str | None] = [None] * len(texts)
    plain: list[int] = []  # ASCII texts
    folded: list[tuple[int, str]] = []  # other texts without Han, normalized
    for i, text in enumerate(texts):
        if text is None:
            continue
        if len(text) > analyzer.max_chars or _SEP in text:
            out[i] = " ".join(analyzer.terms(text))  # (truncated with a warning)
        elif text.isascii():
            plain.append(i)
        else:
            norm = normalize(text, analyzer.max_chars)
            if has_han(norm):
                out[i] = " ".join(analyzer.terms(text))
            else:
                folded.append((i, norm))
    if plain:
        parts = _ascii_parts(analyzer, _JOIN.join([texts[i] for i in plain]))  # type: ignore[misc]
        for i, part in zip(plain, parts):
            out[i] = part.strip(" ")
    if folded:
        parts = _parts(analyzer, _WORDS.findall(_JOIN.join([norm for _, norm in folded])))
        for (i, _), part in zip(folded, parts):
            out[i] = part.strip(" ")
    return out


def _ascii_parts(analyzer: "Analyzer", joined: str) -> list[str]:
    return _parts(analyzer, joined.encode("ascii").translate(_WORD_BYTES).decode("ascii").split())


def _parts(analyzer: "Analyzer", words: list[str]) -> list[str]:
    """The words of texts joined by the separator, as terms: one space-joined part per text (spaces either end)."""
    if analyzer.parts:
        terms = _terms_of(words, analyzer.stopwords, analyzer.stem, True)
        return _with_wholes(" ".join(filter(None, terms)), words, _WHOLES[(analyzer.stopwords, analyzer.stem)])
    if analyzer.stopwords or analyzer.stem:
        words = _terms_of(words, analyzer.stopwords, analyzer.stem)
    return " ".join(filter(None, words)).split(_SEP)


def terms_with_parts(words: list[str], stopwords: bool, stem: bool) -> list[str]:
    """The terms of a text's words (`WORD`'s) for an analyzer with `parts`: each kept word's term, a word mixing
    letters and digits giving its parts' terms in its place (`tokenize.word_parts`; stemmed, no stopword dropped)
    and its own term at the end of the text, so that phrases of parts stay adjacent (`iphone12 case` is
    `iphone 12 case iphone12`)."""
    terms = _terms_of(words, stopwords, stem, True)
    wholes = _WHOLES[(stopwords, stem)]  # (filled with the table by `_terms_of`)
    if not any(map(wholes.__contains__, words)):  # (most texts: one term a word, as without parts)
        return list(filter(None, terms))
    return _with_wholes(" ".join(filter(None, terms)), words, wholes)[0].split()


def _with_wholes(joined: str, words: list[str], wholes: dict[str, str]) -> list[str]:
    """The texts of `joined` (terms, texts parted by the separator), each with the own terms of its words that mix
    letters and digits (`wholes`) appended: the one place they go to the end of their text."""
    ends = " ".join(filter(None, map(wholes.get, words))).split(_SEP)  # (the separator maps to itself)
    return [f"{t.rstrip(' ')} {w.strip(' ')}" if w.strip(" ") else t for t, w in zip(joined.split(_SEP), ends)]


def _terms_of(words: list[str], stopwords: bool, stem: bool, parts: bool = False) -> list[str]:
    """Each word's term ("" for a dropped stopword), the separator kept, through the table for these filters."""
    table = _KEPT if stopwords and stem and not parts else _TABLES.setdefault((stopwords, stem, parts), {})
    wholes = _WHOLES.setdefault((stopwords, stem), {_SEP: _SEP}) if parts else {}
    table[_SEP] = _SEP
    try:
        return list(map(table.__getitem__, words))
    except KeyError:
        pass
    new = list(set(words).difference(table))
    if len(table) + len(new) > _STEMS_MAX:  # bounded memory: start afresh (before filling, so no word is lost)
        table.clear()
        wholes.clear()
        wholes[_SEP] = _SEP
        new = list(set(words).difference((_SEP,)))
    if stopwords and stem and not parts:
        kept_stems(new)  # fills `_KEPT`, the table the one-text path reads too
    else:
        stop = english_stopwords() if stopwords else frozenset()
        table.update(zip(new, ("" if w in stop else s for w, s in zip(new, stem_words(new) if stem else new))))
        for w in new if parts else ():
            found = word_parts(w)
            if found and table[w]:
                pieces = [p for p, _, _ in found]
                wholes[w] = table[w]
                table[w] = " ".join(stem_words(pieces) if stem else pieces)
    table[_SEP] = _SEP
    return list(map(table.__getitem__, words))


def analyze_columns(specs: Sequence[tuple[str, str]], user_dict: str | None,
                    columns: Sequence[Sequence[str | None]]) -> list[list[str | None]]:
    """`joined_terms` of each column of texts with its spec's analyzer ((analyzer name, source field) pairs, as the
    writer reads them). Runs in the writer's process or in an analysis worker."""
    from souk.analysis.registry import get_analyzer

    return [joined_terms(get_analyzer(name, user_dict), column) for (name, _), column in zip(specs, columns)]
