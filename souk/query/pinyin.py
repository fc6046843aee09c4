"""How is this Chinese text typed? Pinyin and pinyin initials keys for prefix matching.

`pinyin_keys("嘉顿 iphone 手机壳") == ("jiaduniphoneshoujike", "jdiphonesjk")`: Han runs become
toneless pinyin (苹果 -> pingguo) and initials (苹果 -> pg); Latin letters and digits are kept, spaces
and punctuation dropped, so a user typing `pingg`, `pg` or `苹果sh` meets the same keys. Input must be
normalized (lower case, simplified). Polyphonic characters take pypinyin's in-word reading.
"""
from __future__ import annotations

import functools
import re
from typing import Iterable

from souk.analysis.normalize import HAN_CLASS

HAN_ONLY = re.compile(rf"^[{HAN_CLASS}]+$")
_PARTS = re.compile(rf"(?P<han>[{HAN_CLASS}]+)|(?P<other>[^\W_{HAN_CLASS}]+)")


@functools.lru_cache(maxsize=200_000)
def _han_run(run: str) -> tuple[str, str]:
    from pypinyin import Style, lazy_pinyin

    syllables = lazy_pinyin(run, style=Style.NORMAL, errors="default")
    full = "".join(syllables).lower()
    initials = "".join(s[0] for s in syllables if s).lower()
    return full, initials


def pinyin_keys(text: str) -> tuple[str, str]:
    """(full pinyin, initials) of normalized text; both empty when it has no Han characters."""
    full, initials, has_han = [], [], False
    for m in _PARTS.finditer(text):
        if m.lastgroup == "han":
            has_han = True
            f, i = _han_run(m.group())
            full.append(f)
            initials.append(i)
        else:
            full.append(m.group())
            initials.append(m.group())
    return ("".join(full), "".join(initials)) if has_han else ("", "")


def typed_key(text: str) -> str:
    """What a prefix looks like in pinyin-key space: Han converted, spaces and punctuation dropped."""
    return "".join(_han_run(m.group())[0] if m.lastgroup == "han" else m.group() for m in _PARTS.finditer(text))


_KEEP = re.compile(rf"[^\W_{HAN_CLASS}]")


def syllables(text: str, words: Iterable[tuple[str, int, int]] = ()) -> list[str | None]:
    """Per character of normalized text: its toneless syllable if Han (read in context), else None.

    `words` (word, start, end), e.g. the text's jieba words, are read one word at a time (cached, so a
    catalog's repeated words cost one pypinyin call each); Han characters outside them are read per
    run. Substrings then get their keys from `span_keys` without new calls.
    """
    out: list[str | None] = [None] * len(text)
    for word, start, _ in words:
        if HAN_ONLY.match(word):
            out[start : start + len(word)] = _run_syllables(word)
    for m in _PARTS.finditer(text):
        if m.lastgroup == "han" and None in out[m.start() : m.end()]:
            out[m.start() : m.end()] = _run_syllables(m.group())
    return out


@functools.lru_cache(maxsize=300_000)
def _run_syllables(run: str) -> tuple[str, ...]:
    from pypinyin import Style, lazy_pinyin

    sy = lazy_pinyin(run, style=Style.NORMAL, errors="default")
    if len(sy) != len(run):  # characters without a reading came back merged: go one by one
        sy = [lazy_pinyin(c, style=Style.NORMAL, errors="default")[0] for c in run]
    return tuple(s.lower() for s in sy)


def span_keys(text: str, sy: list[str | None], start: int, end: int) -> tuple[str, str]:
    """`pinyin_keys(text[start:end])`, read from the syllables of the whole text."""
    full, initials, has_han = [], [], False
    for i in range(start, end):
        s = sy[i]
        if s is not None:
            has_han = True
            full.append(s)
            initials.append(s[:1])
        elif _KEEP.match(text[i]):
            full.append(text[i])
            initials.append(text[i])
    return ("".join(full), "".join(initials)) if has_han else ("", "")
