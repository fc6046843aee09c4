"""How is this Chinese text typed? Pinyin and pinyin initials keys for prefix matching.

`pinyin_keys("嘉顿 iphone 手机壳") == ("jiaduniphoneshoujike", "jdiphonesjk")`: Han runs become
toneless pinyin (苹果 -> pingguo) and initials (苹果 -> pg); Latin letters and digits are kept, spaces
and punctuation dropped, so a user typing `pingg`, `pg` or `苹果sh` meets the same keys. Input must be
normalized (lower case, simplified). Polyphonic characters take pypinyin's in-word reading.
"""
from __future__ import annotations

import functools
import re

from souk.analysis.normalize import HAN_CLASS

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
