"""How many of a query's words a document must hold: the matching strategy of `[query]`.

```toml
[query]
match = "relax"              # "all" | "relax" (default) | "any"
minimum_should_match = "-1"  # relax keeps at least this many words (Elasticsearch syntax: 2, -1, 75%, "3<75%")
relax_below = 1              # relax when fewer documents than this hold every word (1: only when none does)
```
A query's words are what the shopper typed between spaces, Han text cut into jieba's longest words (a
lone Han character stays with its neighbour, so 花西子 is one word, never 花 alone); a word holds
when every index term of it is in the document (in any search field); a word also given as its parts
(`iphone12`: iphone, 12) holds by its parts, so `iphone12` and `iphone 12` find each other. `all`: every word must hold.
`relax`: every word must hold; when fewer than `relax_below` documents hold them all, a word no
document holds, else the least informative word (the one most documents hold) is dropped, one at a time, down to
`minimum_should_match` words, and the result says which words were dropped. `any`: BM25 over any word
(the raw baseline, and candidates for fused and learned pipelines). Documents holding more words come first (tiers, BM25
order
inside a tier); a sort orders each tier. Misuse: deciding which words to drop by position (a
trailing "for adults" would go before a misspelled product word).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Sequence

from souk.analysis.normalize import HAN
from souk.analysis.tokenize import Token
from souk.errors import ConfigError

MODES = ("all", "relax", "any")
KEYS = ("match", "minimum_should_match", "relax_below")
_MSM_PART = re.compile(r"^(?:(\d+)<)?(-?\d+)(%?)$")


@dataclass(frozen=True)
class MatchConfig:
    """The `[query]` matching keys, checked."""

    mode: str = "relax"
    minimum_should_match: str = "-1"
    relax_below: int = 1

    def required(self, n: int) -> int:
        """Words (of `n`) a document must hold at least, after relaxing as far as allowed."""
        return required_count(self.minimum_should_match, n)


def match_config(table: dict[str, Any], where: str = "query") -> MatchConfig:
    """The matching keys of a `[query]` table; ConfigError names a bad key."""
    mode = table.get("match", "relax")
    if mode not in MODES:
        raise ConfigError(f"{where}.match: expected one of {', '.join(MODES)}, got {mode!r}")
    msm = table.get("minimum_should_match", "-1")
    if isinstance(msm, bool) or not isinstance(msm, (int, str)):
        raise ConfigError(f"{where}.minimum_should_match: expected a count or a percentage like \"75%\", got {msm!r}")
    try:
        required_count(str(msm), 1)
    except ValueError as e:
        raise ConfigError(f"{where}.minimum_should_match: {e}") from None
    below = table.get("relax_below", 1)
    if isinstance(below, bool) or not isinstance(below, int) or below < 1:
        raise ConfigError(f"{where}.relax_below: expected a positive number of documents, got {below!r}")
    return MatchConfig(mode, str(msm), below)


def required_count(spec: str, n: int) -> int:
    """Elasticsearch's minimum_should_match for `n` words: `2`, `-1` (all but one), `75%`, `-25%`,
    and conditions `3<75%` (all up to 3 words, 75% above), space-separated, the largest applying wins.
    Always between 1 and `n` (0 words: 0)."""
    if n <= 0:
        return 0
    rule = None
    for part in str(spec).split():
        m = _MSM_PART.match(part)
        if not m:
            raise ValueError(f"cannot read {part!r}; write a count (2, -1), a percentage (75%, -25%) "
                             "or a condition (3<75%)")
        above, value, pct = m.groups()
        if above is None:
            if rule is None:
                rule = (value, pct)
        elif n > int(above):
            rule = (value, pct)
    if rule is None:
        return n  # conditions only, none applying: every word
    value, pct = int(rule[0]), rule[1]
    if pct:
        count = math.floor(n * abs(value) / 100)
        count = n - count if value < 0 else count
    else:
        count = n + value if value < 0 else value
    return max(1, min(n, count))


def word_spans(norm: str, tokens: Sequence[Token]) -> list[tuple[int, int]]:
    """Spans of the query's words in normalized text: whitespace-separated chunks, Han cut into the
    longest tokens (`tokens`: an analyzer's tokens with spans), a lone Han character joined to its
    neighbour in the same chunk."""
    spans: list[tuple[int, int]] = []
    for m in re.finditer(r"\S+", norm):
        a, b = m.span()
        inside = sorted((t for t in tokens if a <= t.start < b), key=lambda t: (t.start, -t.end))
        longest: list[list[Any]] = []
        for t in inside:
            if longest and t.start < longest[-1][1]:
                continue
            han = bool(HAN.match(norm[t.start]))
            if longest and not han and not longest[-1][2]:
                longest[-1][1] = t.end  # Latin pieces of one chunk (usb-c) stay one word
                continue
            longest.append([t.start, t.end, han])
        merged: list[list[Any]] = []  # [start, end, han, lone]
        for start, end, han in longest:
            lone = han and end - start == 1
            if merged and lone and merged[-1][3]:
                merged[-1][1] = end  # consecutive lone characters (遮 瑕) make one word
                continue
            merged.append([start, end, han, lone])
        for i in range(len(merged) - 1, -1, -1):  # a lone character joins the next Han word, else the one before
            if merged[i][3] and merged[i][1] - merged[i][0] == 1 and len(merged) > 1:
                j = i + 1 if i + 1 < len(merged) and merged[i + 1][2] else i - 1
                if 0 <= j < len(merged) and merged[j][2]:
                    merged[j][0], merged[j][1] = min(merged[j][0], merged[i][0]), max(merged[j][1], merged[i][1])
                    merged.pop(i)
        spans.extend((p[0], p[1]) for p in merged)
    return spans


def drop_order(dfs: Sequence[int]) -> list[int]:
    """Positions of words in the order relaxing drops them: words no document holds first (nothing can
    match them), then most documents first (least informative), the later word first among equals."""
    return sorted(range(len(dfs)), key=lambda i: (dfs[i] > 0, -dfs[i], -i))
