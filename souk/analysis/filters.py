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


@functools.lru_cache(maxsize=8)
def _stemmer(language: str, cache: int = 10_000):
    """PyStemmer's stemmer; `cache` is its own memo's size (0: none, for callers that remember stems themselves:
    its memo, full after 10,000 words, made `stemWords` over a corpus's new words 2.5x slower, measured)."""
    import Stemmer

    return Stemmer.Stemmer(language, cache)


_STEMS: dict[str, dict[str, str]] = {}  # language -> word -> stem (or the word itself when it is not stemmed)
_STEMS_MAX = 500_000


def stem_words(words: list[str], language: str = "english") -> list[str]:
    """Stems of many tokens at once; only purely alphabetic tokens are stemmed. Stems are remembered (word
    frequencies are Zipfian: most tokens of a corpus are words seen before)."""
    known = _STEMS.setdefault(language, {})
    get = known.get
    out = [get(w) for w in words]
    if None not in out:
        return out  # type: ignore[return-value]
    if len(known) > _STEMS_MAX:
        known.clear()
    new = list({w for w, s in zip(words, out) if s is None})
    for w, s in zip(new, _stemmer(language, 0).stemWords(new)):
        # `_LATIN`, with str methods first for the usual lower-case ASCII word (a regex match costs 3x more)
        known[w] = s if (w.isascii() and w.isalpha() and w.islower()) or _LATIN.match(w) else w
    return [known[w] for w in words]


_KEPT: dict[str, str] = {}  # English word -> its stem, or "" for a stopword (one lookup for both filters)


def kept_stems(words: list[str]) -> list[str]:
    """`stem_words` of the words that are not English stopwords, in order: what the standard analyzer keeps."""
    out = list(map(_KEPT.get, words))
    if None in out:
        if len(_KEPT) > _STEMS_MAX:
            _KEPT.clear()
        stop = english_stopwords()
        new = list({w for w, s in zip(words, out) if s is None})
        for w, s in zip(new, stem_words(new)):
            _KEPT[w] = "" if w in stop else s
        out = [_KEPT[w] for w in words]
    return list(filter(None, out))  # type: ignore[arg-type]


def stem(word: str, language: str = "english") -> str:
    """Snowball stem of an alphabetic word; digits, mixed tokens and Han words pass unchanged."""
    return _stemmer(language).stemWord(word) if _LATIN.match(word) else word
