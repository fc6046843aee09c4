"""Analyzers by name: the same chain runs at index and query time, chosen per field.

| name       | Han text               | Latin text                   |
|------------|------------------------|------------------------------|
| standard   | jieba search mode      | stopwords removed, stemmed   |
| cjk_bigram | overlapping bigrams    | stopwords removed, stemmed   |
| simple     | jieba search mode      | lower-cased words, no stems  |
| keyword    | the whole value, normalized, as one term                |

A name ending in `+parts` (`standard+parts`) is that analyzer giving each word that mixes letters and digits
(`mate40pro`, `iphone12`, `p53`) as its parts in its place (`mate 40 pro`) and as itself at the end of the text
(where it breaks no phrase of parts), so `iphone 12` finds `iphone12` and back. Schemas name the base analyzer;
`[analysis] word_parts` (on for indexes created since it exists, `Schema.analyzer_of`) adds the suffix.
Misuse: naming a `+parts` analyzer in a schema's field.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from souk.analysis.batch import terms_with_parts
from souk.analysis.filters import english_stopwords, kept_stems, stem, stem_words
from souk.analysis.normalize import DEFAULT_MAX_CHARS, has_han, normalize
from souk.analysis.tokenize import WORD, Token, tokenize, word_parts, words_starting
from souk.plugins import Registry


# `WORD` on ASCII text, lower-cased: A-Z lowered, a-z and 0-9 kept, every other character a space, then `split`
# (the words of `re.findall("[a-z0-9]+", text.lower())`: scifact queries 3.7 -> 2.0 us, homedepot 1.2 -> 0.9)
_ASCII_WORDS = str.maketrans({chr(c): chr(c).lower() if chr(c).isalnum() else " " for c in range(128)})


@dataclass(frozen=True)
class Analyzer:
    """normalize -> tokenize -> filters. Frozen so it can be shared and cached."""

    name: str
    han: str = "jieba"
    stem: bool = True
    stopwords: bool = True
    whole: bool = False
    user_dict: str | None = None
    max_chars: int = DEFAULT_MAX_CHARS
    parts: bool = False  # words mixing letters and digits give their parts (and themselves at the text's end)

    def tokens(self, text: str, han: bool = True, prefixes: tuple[str, ...] | None = None) -> list[Token]:
        """Tokens of the normalized text with spans into it (stemmed text, original spans). A caller looking for
        given terms may narrow the work: `han=False` leaves Han runs out, `prefixes` keeps only tokens that
        start with one of them (before stemming: stems keep a word's first letters)."""
        norm = normalize(text, self.max_chars)
        if self.whole:
            value = "_".join(norm.split())
            return [Token(value, 0, len(norm))] if value else []
        stop = english_stopwords() if self.stopwords else frozenset()
        out: list[Token] = []
        wholes: list[Token] = []
        if prefixes is not None and not han and not self.parts:  # (a part need not start its word)
            found = words_starting(norm, prefixes)
        else:
            found = tokenize(norm, self.han if han else "skip", self.user_dict)
        for tok in found:
            if tok.text in stop:
                continue
            pieces = word_parts(tok.text) if self.parts else []
            if prefixes is None or tok.text.startswith(prefixes):
                whole = Token(stem(tok.text) if self.stem else tok.text, tok.start, tok.end, bool(pieces))
                (wholes if pieces else out).append(whole)
            for part, a, b in pieces:
                if prefixes is None or part.startswith(prefixes):
                    out.append(Token(stem(part) if self.stem else part, tok.start + a, tok.start + b))
        return out + wholes  # (a word given as parts is whole at the end: phrases of parts stay adjacent)

    def required_terms(self, text: str) -> list[str]:
        """The terms a document must hold to hold `text` (every word, a phrase): `terms` without the whole of each
        word given as its parts, in order."""
        return [t.text for t in self.tokens(text) if not t.whole] if self.parts else self.terms(text)

    def terms(self, text: str) -> list[str]:
        """The index terms of `text`, in order (duplicates kept: BM25 counts them)."""
        if not self.whole and text.isascii() and len(text) <= self.max_chars:  # hot path: plain ASCII text
            words = text.translate(_ASCII_WORDS).split()  # (WORD on ASCII: letters and digits)
            if self.parts:
                return terms_with_parts(words, self.stopwords, self.stem)
            if self.stopwords and self.stem:
                return kept_stems(words)
            if self.stopwords:
                stop = english_stopwords()
                words = [w for w in words if w not in stop]
            return stem_words(words) if self.stem else words
        norm = normalize(text, self.max_chars)
        if self.whole or self.han != "jieba" or has_han(norm):
            return [t.text for t in self.tokens(text)]
        words = WORD.findall(norm)  # no Han text: skip span bookkeeping (hot path)
        if self.parts:
            return terms_with_parts(words, self.stopwords, self.stem)
        if self.stopwords:
            stop = english_stopwords()
            words = [w for w in words if w not in stop]
        return stem_words(words) if self.stem else words


# analyzer name (a schema's `analyzer` key) -> `Analyzer` settings
ANALYZERS: Registry[dict[str, Any]] = Registry("analyzer")
ANALYZERS.register("standard", {})
ANALYZERS.register("cjk_bigram", {"han": "bigram"})
ANALYZERS.register("simple", {"stem": False, "stopwords": False})
ANALYZERS.register("keyword", {"whole": True, "stem": False, "stopwords": False})


PARTS = "+parts"


def analyzer_name(base: str, parts: bool) -> str:
    """The name of analyzer `base` with word parts when `parts` (never for `keyword`, which splits nothing)."""
    return base + PARTS if parts and not ANALYZERS.get(base).get("whole") else base


@functools.lru_cache(maxsize=64)
def get_analyzer(name: str, user_dict: str | None = None, max_chars: int = DEFAULT_MAX_CHARS) -> Analyzer:
    """The analyzer registered under `name` (or `name` without its `+parts`, with parts); unknown names list the
    known ones."""
    if name.endswith(PARTS) and name[: -len(PARTS)] in ANALYZERS:
        settings = {**ANALYZERS.get(name[: -len(PARTS)]), "parts": True}
    else:
        settings = ANALYZERS.get(name)
    return Analyzer(name=name, user_dict=user_dict, max_chars=max_chars, **settings)
