"""Token filters applied after tokenization: English stopwords and Snowball stemming."""
from __future__ import annotations

import functools
import re
from pathlib import Path

_LATIN = re.compile(r"^[a-z\u00c0-\u024f]+$")


@functools.lru_cache(maxsize=1)
def english_stopwords() -> frozenset[str]:
    """The English stopword list shipped with souk (function words; product words like 'over' kept)."""
    path = Path(__file__).with_name("stopwords_en.txt")
    return frozenset(w.strip() for w in path.read_text(encoding="utf-8").split() if w.strip())


@functools.lru_cache(maxsize=4)
def _stemmer(language: str):
    import Stemmer

    return Stemmer.Stemmer(language)


def stem_words(words: list[str], language: str = "english") -> list[str]:
    """Stems of many tokens at once; only purely alphabetic tokens are stemmed."""
    if all(map(_LATIN.match, words)):
        return _stemmer(language).stemWords(words)
    stemmer = _stemmer(language)
    return [stemmer.stemWord(w) if _LATIN.match(w) else w for w in words]


def stem(word: str, language: str = "english") -> str:
    """Snowball stem of an alphabetic word; digits, mixed tokens and Han words pass unchanged."""
    return _stemmer(language).stemWord(word) if _LATIN.match(word) else word
