"""Script-aware tokenization: Han runs go to jieba (or bigrams), everything else splits on word boundaries.

Mixed strings such as `iphone 15 手机壳` or `garden 嘉顿蛋糕 75g` become
`iphone | 15 | 手机 | 机壳 | 手机壳 | garden | 嘉顿 | 蛋糕 | 75g`. Input must already be normalized.
"""
from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass
from typing import Iterator

from souk.analysis.normalize import HAN_CLASS

_RUNS = re.compile(rf"(?P<han>[{HAN_CLASS}]+)|(?P<word>[^\W_{HAN_CLASS}]+)")
WORD = re.compile(rf"[^\W_{HAN_CLASS}]+")
_PART = re.compile(r"\d+|[^\W\d_]+")  # the letter runs and digit runs of a word
MAX_PARTS = 4  # a word of more runs is a code (b00x4wh2ya), kept whole only


@dataclass(frozen=True)
class Token:
    """A token with its character span in the (normalized) input."""

    text: str
    start: int
    end: int
    whole: bool = False  # a word also given as its parts (tokens of its span): it counts for the score only


def word_parts(word: str) -> list[tuple[str, int, int]]:
    """The letter and digit runs of a word mixing them (`mate40pro` -> mate, 40, pro) with their spans in it,
    when there are 2 to `MAX_PARTS`; else [] (a plain word, or a code). Elasticsearch's word_delimiter splits
    the same way; the analyzer keeps the word whole too (`Analyzer.parts`)."""
    if word.isalpha() or word.isdigit():
        return []
    found = [(m.group(), m.start(), m.end()) for m in _PART.finditer(word)]
    return found if 2 <= len(found) <= MAX_PARTS else []


@functools.lru_cache(maxsize=8)
def _jieba(user_dict: str | None):
    import jieba

    from souk.analysis.jieba_dict import new_tokenizer

    jieba.setLogLevel(logging.WARNING)
    return new_tokenizer(user_dict)


def in_dictionary(word: str, user_dict: str | None = None) -> bool:
    """True when jieba's dictionary (plus the user dictionary) holds `word`, i.e. it is no HMM guess."""
    return _jieba(user_dict).FREQ.get(word, 0) > 0


def han_words(run: str, user_dict: str | None = None) -> Iterator[tuple[str, int, int]]:
    """jieba search-mode words of a Han run with their spans (overlapping sub-words included)."""
    for word, start, end in _jieba(user_dict).tokenize(run, mode="search"):
        yield word, start, end


def han_segments(run: str, user_dict: str | None = None) -> Iterator[tuple[str, int, int]]:
    """jieba's precise-mode words of a Han run with their spans (no overlaps: each character in one word)."""
    yield from _jieba(user_dict).tokenize(run)


def suggested_count(word: str, user_dict: str | None = None) -> int:
    """The smallest dictionary count with which jieba keeps `word` whole when it stands alone."""
    return int(_jieba(user_dict).suggest_freq(word, False))


def han_bigrams(run: str) -> Iterator[tuple[str, int, int]]:
    """Overlapping character bigrams; a single character stays a unigram."""
    if len(run) == 1:
        yield run, 0, 1
        return
    for i in range(len(run) - 1):
        yield run[i : i + 2], i, i + 2


def words_starting(text: str, prefixes: tuple[str, ...]) -> list[Token]:
    """The non-Han words of normalized text that start with one of `prefixes` (what `tokenize(text, "skip")`
    gives, filtered by prefix, without building a token for every other word). One fixed pattern: a pattern
    per query's prefixes cost a 3.5 ms compile per search (highlighting, homedepot `full`)."""
    prefixes = tuple(p for p in prefixes if WORD.fullmatch(p))  # no word starts with a non-word character
    if not prefixes:
        return []
    return [Token(m.group(), m.start(), m.end()) for m in WORD.finditer(text) if m.group().startswith(prefixes)]


def tokenize(text: str, han: str = "jieba", user_dict: str | None = None) -> list[Token]:
    """Split normalized text into tokens; `han` is "jieba", "bigram", "char" or "skip" (Han runs give no tokens)."""
    tokens: list[Token] = []
    for match in _RUNS.finditer(text):
        start = match.start()
        if match.lastgroup == "word":
            tokens.append(Token(match.group(), start, match.end()))
            continue
        run = match.group()
        if han == "skip":
            continue
        if han == "jieba":
            pieces = han_words(run, user_dict)
        elif han == "bigram":
            pieces = han_bigrams(run)
        else:
            pieces = ((c, i, i + 1) for i, c in enumerate(run))
        tokens.extend(Token(w, start + s, start + e) for w, s, e in pieces if w.strip())
    return tokens
