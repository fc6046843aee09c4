"""Words of normalized text as a reader sees them: whitespace-separated Latin words (`strong-tie`
stays one word) and jieba's longest Han words (without search mode's overlapping sub-words).

Used for what people type and read (completions, mined synonym candidates), not for index terms:
those come from the field's analyzer. Input must already be normalized.
"""
from __future__ import annotations

import re
from typing import Iterator

from souk.analysis.normalize import HAN
from souk.analysis.tokenize import tokenize
from souk.query.lexicon import maximal_tokens

_CHUNK = re.compile(r"\S+")
_PUNCT = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~、。·–—…“”‘’《》【】「」"
_BREAK = frozenset(",;:/|、。")


def word_runs(key: str) -> Iterator[list[tuple[str, int, int]]]:
    """Runs of (word, start, end) in a normalized title, split where punctuation stands between words."""
    run: list[tuple[str, int, int]] = []
    for m in _CHUNK.finditer(key):
        chunk, start = m.group(), m.start()
        if HAN.search(chunk):
            reach = 0
            for w, a, b in longest_tokens(chunk):
                if run and chunk[reach:a].strip():  # punctuation between words ends a phrase
                    yield run
                    run = []
                run.append((w, start + a, start + b))
                reach = b
            if chunk[reach:].strip() and run:
                yield run
                run = []
            continue
        word = chunk.strip(_PUNCT)
        if not word:
            if run:
                yield run
            run = []
            continue
        offset = chunk.index(word) if chunk[0] in _PUNCT else 0
        run.append((word, start + offset, start + offset + len(word)))
        if chunk[-1] in _BREAK:
            yield run
            run = []
    if run:
        yield run


def longest_tokens(text: str) -> list[tuple[str, int, int]]:
    """(word, start, end) of normalized text without the sub-words of jieba's search mode."""
    return [(t.text, t.start, t.end) for t in maximal_tokens(tokenize(text))]


def words(text: str) -> list[str]:
    """The words of normalized text, punctuation stripped, in order."""
    return [w for run in word_runs(text) for w, _, _ in run]
