"""Keywords: which words of an over-long query carry what the user wants?

A shopper who types a whole sentence ("i am looking for a waterproof hiking jacket for women that is
not too expensive", "想给家里老人买一个屏幕大一点声音大的智能手机") gets poor keyword matches: every filler
word scores. Queries longer than `longer_than` terms are reduced to at most `max_terms` keywords:

- Chinese (jieba part-of-speech tags): nouns, brands/English words and model numbers weighted by
  jieba's IDF table; verbs, adjectives, function words and price talk weigh little or nothing; the
  head noun (the last noun of the first clause: Chinese modifiers precede it) and the noun right
  before it are boosted.
- English (souk's stopwords plus shopping filler such as "looking", "want", "please"): the first noun
  phrase (content words up to the first preposition or clause word) holds the head noun (its last
  word, boosted) and its modifiers; words after "with"/"for" describe features and purpose.

Words weighing less than a fifth of the heaviest are dropped even when fewer than `max_terms` remain.
The result keeps words in query order and says what was dropped. Misuse: reducing short queries
(every word of a 3-word query matters) or reducing before spelling correction.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from souk.analysis.filters import english_stopwords
from souk.analysis.normalize import HAN, han_share, normalize
from souk.analysis.tokenize import WORD
from souk.errors import QueryError
from souk.plugins import POSITIVE_INT, parse_options
from souk.query.plan import QUERY_STEPS

if TYPE_CHECKING:
    pass

DEFAULT_MAX_TERMS = 8
DEFAULT_LONGER_THAN = 12

# Words of shopping requests that name no product property.
FILLER = frozenset("""
looking look searching search want wanted wanting need needs needed buy buying purchase find finding get
please help recommend recommendation recommendations suggest suggestion something anything thing things
good best nice great really kind sort like would could might also maybe one ones im i'm id i'd thanks
hello hi hey show give tell know not too very much
cheap cheaper cheapest expensive affordable inexpensive price priced prices budget cost dollars dollar bucks money
""".split())
# Words that end the first noun phrase of an English request.
_BREAKS = frozenset("""
for with without in on at to from by of that which who whose where when while because so but and or
is are was were be been can could will would should that's than as about under over into
""".split())
_FEATURE_MARKERS = frozenset({"with", "has", "having"})
_PRICE_UNITS = frozenset({"dollars", "dollar", "bucks", "usd", "hkd", "rmb", "yuan", "euros", "pounds"})
_CHINESE_PRICE = re.compile(r"^[\d.零一二三四五六七八九十百千万两]+(元|块|块钱|港币|美元)?$")
_CHINESE_CURRENCY = frozenset("元 块 块钱 港币 美元 rmb".split())
_NEGATING = frozenset({"without", "no", "not", "non"})
# jieba POS tag -> prior weight (0 drops the word). Unlisted tags weigh 0.3.
_POS_PRIOR = {
    "n": 1.0, "nz": 1.1, "nt": 1.0, "ns": 0.9, "nr": 0.9, "nrt": 1.0, "nrfg": 0.9, "ng": 0.8, "vn": 0.8,
    "an": 0.8, "j": 0.9, "l": 0.7, "i": 0.5, "eng": 1.3, "m": 0.8, "mq": 0.9, "b": 0.8, "a": 0.5, "v": 0.3,
    "f": 0.2, "s": 0.4, "t": 0.3, "q": 0.2,
    "d": 0.0, "r": 0.0, "p": 0.0, "c": 0.0, "u": 0.0, "uj": 0.0, "ul": 0.0, "uz": 0.0, "ug": 0.0, "uv": 0.0,
    "ud": 0.0, "y": 0.0, "e": 0.0, "o": 0.0, "x": 0.0, "w": 0.0, "h": 0.0, "k": 0.0, "z": 0.0, "zg": 0.0,
}
_NOUNISH = ("n", "nz", "nt", "ns", "nr", "nrt", "nrfg", "vn", "an", "j", "eng")
_CHINESE_FILLER = frozenset(
    "想 想要 要 买 购买 求 推荐 请问 请 有没有 哪个 哪款 什么 一个 一款 一下 一点 一点儿 一些 给 "
    "帮 帮忙 谢谢 最好 好用 适合 需要 "
    "不要 稍微 比较 非常 特别 价格 价钱 便宜 实惠 划算 贵 太贵 不贵 多少钱 左右 以内 以下 以上 就行 就好".split())
_NEGATIONS = frozenset("不 无 没 没有 非 免 不含 无需".split())
_CLAUSE_END = frozenset("，,。.;；!！?？、")
MIN_SHARE = 0.2  # a keyword weighs at least this share of the heaviest one


@dataclass(frozen=True)
class KeywordReduction:
    """`kept` and `dropped` terms (query order); `reduced_text` is what to search for instead."""

    kept: list[str]
    dropped: list[str]
    reduced_text: str
    reduced: bool
    terms: int = 0
    weights: dict[str, float] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict:
        return {"kept": self.kept, "dropped": self.dropped, "reduced_text": self.reduced_text,
                "reduced": self.reduced, "terms": self.terms}


@dataclass(frozen=True)
class _Term:
    text: str
    pos: int
    weight: float


def reduce(text: str, max_terms: int = DEFAULT_MAX_TERMS, longer_than: int = DEFAULT_LONGER_THAN) -> KeywordReduction:
    """Reduce a query of more than `longer_than` terms to at most `max_terms` keywords; shorter
    queries come back unchanged (`reduced=False`)."""
    if max_terms < 1 or longer_than < 1:
        raise QueryError("max_terms and longer_than must be >= 1")
    norm = " ".join(normalize(text).split())
    terms = _chinese_terms(norm) if han_share(norm) >= 0.3 else _english_terms(norm)
    if len(terms) <= longer_than:
        words = [t.text for t in terms]
        return KeywordReduction(words, [], text, False, len(terms))
    ranked = sorted(terms, key=lambda t: (-t.weight, t.pos))
    floor = max(ranked[0].weight * MIN_SHARE, 1e-9)
    keep = {t.pos for t in ranked[:max_terms] if t.weight >= floor} or {ranked[0].pos}
    kept = [t.text for t in terms if t.pos in keep]
    kept = list(dict.fromkeys(kept))
    dropped = [t.text for t in terms if t.pos not in keep]
    weights = {t.text: round(t.weight, 3) for t in terms}
    return KeywordReduction(kept, dropped, " ".join(kept), True, len(terms), weights)


# ---- English ------------------------------------------------------------------------------------
def _english_terms(norm: str) -> list[_Term]:
    words = WORD.findall(norm)
    stop = english_stopwords()
    weights = [0.0] * len(words)
    segment: list[int] = []
    seen_head, marker = False, None
    segments: list[tuple[list[int], str | None]] = []
    for i, w in enumerate(words):
        if w in _BREAKS or w in stop or w in FILLER or w in _NEGATING:
            if segment:
                segments.append((segment, marker))
                segment = []
            if w in _BREAKS or w in _FEATURE_MARKERS or w in _NEGATING:
                marker = w
            continue
        segment.append(i)
    if segment:
        segments.append((segment, marker))
    for seg, marker in segments:
        if marker in _NEGATING:
            continue  # "without a hood", "no sugar": keyword search cannot negate, so these words go
        if not seen_head:
            seen_head = True
            for n, i in enumerate(seg[:-1]):
                weights[i] = 1.8 + 0.2 * (n + 1) / len(seg)  # nearer the head: more likely part of the noun
            weights[seg[-1]] = 3.0 if not words[seg[-1]].isdigit() else 2.0
            if words[seg[-1]].isdigit() and len(seg) > 1:
                weights[seg[-2]] = 3.0  # "tv 65" -> the noun before a trailing number
        else:
            base = 1.2 if marker in _FEATURE_MARKERS else 1.0
            for i in seg:
                weights[i] = base
            weights[seg[-1]] = base + 0.2
    for i, w in enumerate(words):
        if weights[i] and any(c.isdigit() for c in w):
            weights[i] = max(weights[i], 1.5) if not w.isdigit() else weights[i]
        if w.isdigit() and i + 1 < len(words) and words[i + 1] in _PRICE_UNITS:
            weights[i] = 0.0  # "2000 dollars" is a price, not a product word
    return [_Term(w, i, weights[i]) for i, w in enumerate(words)]


# ---- Chinese ------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _jieba_tools():
    import logging

    import jieba
    import jieba.analyse
    import jieba.posseg

    jieba.setLogLevel(logging.WARNING)
    tfidf = jieba.analyse.default_tfidf
    return jieba.posseg.dt, tfidf.idf_freq, tfidf.median_idf


def _chinese_terms(norm: str) -> list[_Term]:
    tagger, idf, median_idf = _jieba_tools()
    stop = english_stopwords()
    tagged = [(p.word, p.flag) for p in tagger.cut(norm) if p.word.strip()]
    first_clause = next((i for i, (w, _) in enumerate(tagged) if w in _CLAUSE_END and i > 0), len(tagged))
    pairs: list[tuple[str, str]] = []
    clause_of: list[bool] = []
    for i, (word, flag) in enumerate(tagged):
        if not (WORD.search(word) or HAN.search(word)):
            continue
        if pairs and pairs[-1][0] in _NEGATIONS and pairs[-1][1] != "negated":
            pairs[-1] = (pairs[-1][0] + word, flag)  # 不 + 含糖 stays one term: 不含糖
            continue
        pairs.append((word, flag))
        clause_of.append(i < first_clause)
    max_idf = max(idf.values()) if idf else 1.0
    weights = []
    for k, (word, flag) in enumerate(pairs):
        prior = _POS_PRIOR.get(flag, 0.3)
        next_word = pairs[k + 1][0] if k + 1 < len(pairs) else ""
        priced = _CHINESE_PRICE.match(word) and (not word[-1].isdigit() or next_word in _CHINESE_CURRENCY)
        if word in _CHINESE_FILLER or word in stop or word in FILLER or word in _CHINESE_CURRENCY or priced:
            prior = 0.0
        elif len(word) == 1 and HAN.match(word) and flag not in ("n", "ng", "nz"):
            prior = min(prior, 0.2)
        rarity = idf.get(word, median_idf) / max_idf if HAN.search(word) else 0.8
        weights.append(prior * (0.5 + rarity))
    nouns = [i for i, (_, flag) in enumerate(pairs) if flag in _NOUNISH and weights[i] > 0]
    nouns = [i for i in nouns if clause_of[i]] or nouns  # the head noun ends the first clause with nouns
    if nouns:
        head = nouns[-1]
        weights[head] *= 2.0
        if head - 1 in nouns or (head > 0 and pairs[head - 1][1] in ("n", "b", "vn", "nz", "eng")):
            weights[head - 1] = max(weights[head - 1], 0.1) * 1.5
    return [_Term(word, i, weights[i]) for i, (word, _) in enumerate(pairs)]


@dataclass
class KeywordOptions:
    """`[query.keywords]`."""

    max_terms: int = field(default=DEFAULT_MAX_TERMS, metadata=POSITIVE_INT)
    longer_than: int = field(default=DEFAULT_LONGER_THAN, metadata=POSITIVE_INT)


@QUERY_STEPS.register("keywords")
class KeywordRewriter:
    """Query step `keywords`: searches an over-long query's keywords instead of the whole sentence
    and notes what was dropped. Options (`[query.keywords]`): `max_terms` (8), `longer_than` (12).
    Queries with "phrases" or +/- words are left as typed."""

    def __init__(self, searcher: Any = None, options: dict[str, Any] | None = None):
        opts = parse_options("query.keywords", options, KeywordOptions)
        self.max_terms, self.longer_than = opts.max_terms, opts.longer_than

    def rewrite(self, plan):
        if plan.syntax.has_operators:
            return plan
        result = reduce(plan.text, self.max_terms, self.longer_than)
        if result.reduced:
            plan.text = result.reduced_text
            plan.notes.append(f"keywords: searched {result.reduced_text!r}; dropped {' '.join(result.dropped)}")
        return plan
