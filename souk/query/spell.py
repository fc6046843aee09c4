"""Spelling correction with "did you mean": English typos, compounds, and Chinese typed by sound.

`Speller(lexicon).correct(text)` builds a lattice over the query's tokens and keeps the best paths
under a noisy-channel score: log P(words) from a bigram model of the catalog's titles (interpolated
with unigram frequencies; a query log adds counts) plus log P(typed | words), an edit cost:

| edge       | example                         | cost (log units, `SpellConfig`)                         |
|------------|---------------------------------|----------------------------------------------------------|
| spelling   | drll -> drill                   | `edit_cost` per OSA edit, less for doubled letters       |
| split      | tshirt -> t shirt, cocacola     | `split_cost`                                             |
| join       | almond milk -> almondmilk       | `join_cost` (`join_known_cost` when both words are known) |
| homophone  | 平果 -> 苹果 (same pinyin)        | `homophone_cost` per changed character (fuzzy: more)     |
| pinyin     | pingguo shouji -> 苹果手机        | `pinyin_cost` per word                                   |
| initials   | pg -> 苹果                       | `initials_cost`, only when one word dominates the initials |

Tokens are never corrected when the vocabulary already trusts them (`trust_df` documents, in any
inflection), when they are protected (brands, model numbers), carry a digit, or sit inside a quantity
(`souk.query.units`: 70%, 500ml, 3/4 in). `decide()` turns hit counts into rewrite / suggest / none.
Misuse: building a Speller per query (it indexes the vocabulary once; keep it with the searcher).
"""
from __future__ import annotations

import functools
import heapq
import math
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any, Sequence

from souk.analysis.filters import english_stopwords
from souk.analysis.normalize import HAN, normalize
from souk.analysis.tokenize import tokenize
from souk.plugins import option_check, parse_options
from souk.query.plan import QUERY_STEPS
from souk.query.lexicon import Lexicon, maximal_tokens
from souk.query.units import quantity_spans

DECISIONS = ("rewrite", "suggest", "none")
_EAGER = [True]  # spellers of the `spell` step build every table at once (a server: no request waits for one)


def tables_on_first_use() -> None:
    """One-shot processes (a CLI search): the `spell` step's spellers build their tables (and read the bigrams)
    only when a query needs them; a query of trusted words needs none."""
    _EAGER[0] = False


@dataclass(frozen=True)
class SpellConfig:
    """Weights of the noisy channel (log units) and the trust thresholds. Checked on homedepot train:
    nDCG@10 is flat (within 0.001) around these values; the decision policy matters more."""

    trust_df: int = 3  # a word in this many documents (or query-log lines) is never corrected
    min_target_df: int = 2  # a correction must occur in at least this many documents
    edit_cost: float = 4.0
    double_letter_cost: float = 2.0  # per edit that only doubles or undoubles a letter (buter, sunglases)
    first_letter_cost: float = 1.5  # extra when the first letter differs
    one_edit_len: int = 4  # shortest word that may be corrected by one edit
    two_edit_len: int = 8  # shortest word that may be corrected by two edits
    split_cost: float = 2.0
    join_cost: float = 2.0
    join_known_cost: float = 6.0  # a join of two words the vocabulary trusts (chain saw -> chainsaw)
    homophone_cost: float = 1.5
    fuzzy_pinyin_cost: float = 3.5
    pinyin_cost: float = 1.0
    initials_cost: float = 3.0
    initials_dominance: float = 0.6  # share of the initials' documents the chosen word must hold
    unseen_count: float = 0.01 # virtual collection count of a word never seen
    bigram_weight: float = 0.7
    log_weight: float = 1.0  # a query-log occurrence counts as this many collection occurrences
    min_gain: float = 0.0  # log-odds by which a rewrite must beat the query as typed
    max_candidates: int = 5
    beam: int = 8


@dataclass(frozen=True)
class Edit:
    """One change: `original` (a span of the normalized query) became `replacement`."""

    original: str
    replacement: str
    kind: str  # spelling | split | join | homophone | fuzzy_pinyin | pinyin | initials
    start: int
    end: int


@dataclass(frozen=True)
class Correction:
    """The speller's answer. `candidates` (text, probability) are best first and include the query
    as typed (normalized); `changed` is False when the best candidate is the query itself."""

    query: str
    corrected: str
    changed: bool
    candidates: list[tuple[str, float]]
    edits: list[Edit] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"query": self.query, "corrected": self.corrected, "changed": self.changed,
                "candidates": [[t, s] for t, s in self.candidates],
                "edits": [vars(e) for e in self.edits]}


def decide(original_hits: int, corrected_hits: int, few: int = 0, plenty: int = 1, suggest_min: int = 1) -> str:
    """What to do with a changed query, from the hits of the query as typed and of the correction.

    "rewrite": the original finds at most `few` documents and the correction at least `plenty` (search
    the correction, say so); "suggest": the correction finds at least `suggest_min` (search the original,
    offer "did you mean"); "none" otherwise. Count hits the same way for both (`correction_hits`).
    """
    if not 0 <= few < plenty or suggest_min < 1:
        raise ValueError(f"need 0 <= few < plenty and suggest_min >= 1, got few={few}, plenty={plenty}, "
                         f"suggest_min={suggest_min}")
    if original_hits <= few and corrected_hits >= plenty:
        return "rewrite"
    if corrected_hits >= suggest_min:
        return "suggest"
    return "none"


def correction_hits(searcher, lexicon: Lexicon, correction: Correction) -> tuple[int, int]:
    """(hits of the query as typed, hits of the correction) for `decide`: documents matching every word.

    Words the two share and the index does not know are left out of both (they match nothing either
    way), so `30 inch refigrator` is judged on `refigrator` against `refrigerator`. Numbers are
    optional; the searcher's plain-word fallback counts as no hit.
    """
    from souk.query.lexicon import surface_words

    stop = english_stopwords()
    typed = [w for w in surface_words(correction.query) if w not in stop]
    fixed = [w for w in surface_words(correction.corrected) if w not in stop]
    unknown = {w for w in set(typed) & set(fixed) if not lexicon.known(w)}
    return (_all_words_hits(searcher, [w for w in typed if w not in unknown]),
            _all_words_hits(searcher, [w for w in fixed if w not in unknown]))


def _all_words_hits(searcher, words: list[str]) -> int:
    from souk.index.searcher import SearchRequest

    required = [w if w[0].isdigit() else f"+{w}" for w in words]
    if not required:
        return 0
    result = searcher.search(SearchRequest(query=" ".join(required), k=0, highlight=False))
    return 0 if result.relaxed else result.total


# ---------------------------------------------------------------- the speller


@dataclass(frozen=True)
class _Token:
    text: str
    start: int
    end: int
    han: bool
    alpha: bool  # Latin letters only
    fixed: bool  # never changed on its own (digits, quantities, protected, stopwords, single letters)
    trusted: bool  # known well enough not to be corrected


@dataclass(frozen=True)
class _PinyinTables:
    syllables: dict[str, list[str]]
    fuzzy: dict[str, list[str]]
    typed: dict[str, list[str]]
    initials: dict[str, list[str]]


@dataclass(frozen=True)
class _Edge:
    start: int  # token positions [start, end)
    end: int
    words: tuple[str, ...]
    cost: float
    kind: str | None  # None: the tokens as typed


class Speller:
    """Corrects queries against one lexicon (one commit of an index, plus an optional query log)."""

    def __init__(self, lexicon: Lexicon, config: SpellConfig | None = None):
        self.lexicon = lexicon
        self.config = config or SpellConfig()
        self._stop = english_stopwords()
        # the tables below are built on first use: a query of trusted words needs none of them (a CLI search)

    def prepare(self) -> "Speller":
        """Build every table now (they are otherwise built on first use)."""
        for table in ("_total", "_context", "_by_length", "_pinyin"):
            getattr(self, table)
        return self

    @functools.cached_property
    def _total(self) -> float:
        lexicon, cfg = self.lexicon, self.config
        total = sum(cf for _, cf in lexicon.words.values()) + cfg.log_weight * sum(lexicon.log_words.values())
        return max(total, 1.0)

    @functools.cached_property
    def _context(self) -> dict[str, float]:
        context: dict[str, float] = defaultdict(float)
        for key, count in list(self.lexicon.bigrams.items()) + list(self.lexicon.log_bigrams.items()):
            context[key.split(" ", 1)[0]] += count
        return context

    @functools.cached_property
    def _by_length(self) -> dict[int, list[str]]:
        by_length: dict[int, list[str]] = defaultdict(list)
        for word, (df, _) in self.lexicon.words.items():
            if (
                df >= self.config.min_target_df
                and word.isalpha()
                and word.isascii()
                and len(word) > 1
                and word not in self._stop
            ):
                by_length[len(word)].append(word)
        return by_length

    @functools.cached_property
    def _pinyin(self) -> "_PinyinTables":
        """Han words by their syllables, fuzzy syllables, typed letters and initials, most documents first."""
        lexicon = self.lexicon
        tables = _PinyinTables(defaultdict(list), defaultdict(list), defaultdict(list), defaultdict(list))
        for word, syllables in lexicon.pinyin.items():
            if lexicon.df(word) < self.config.min_target_df:
                continue
            parts = syllables.split()
            tables.syllables[syllables].append(word)  # "ping guo" -> [苹果]
            tables.fuzzy[" ".join(map(_fuzzy, parts))].append(word)
            tables.typed["".join(parts)].append(word)  # "pingguo" -> [苹果]
            tables.initials["".join(p[0] for p in parts)].append(word)  # "pg" -> [苹果, ...]
        for table in (tables.syllables, tables.fuzzy, tables.typed, tables.initials):
            for key, words in table.items():
                words.sort(key=lambda w: -lexicon.df(w))
        return tables

    @functools.cached_property
    def _longest_typed(self) -> int:
        return max(map(len, self._pinyin.typed), default=0)

    # ---- public -------------------------------------------------------------------------------
    def correct(self, text: str) -> Correction:
        """The best correction of `text` and the runners-up (see the module docstring)."""
        norm = normalize(text)
        tokens = self._tokens(norm)
        if not tokens or self._as_typed(tokens):
            return Correction(text, text, False, [(norm, 1.0)])
        edges = self._edges(tokens)
        typed = [e for e in edges if e.kind is None and e.end == e.start + 1]
        typed_score = self._path_score(sorted(typed, key=lambda e: e.start))
        paths = self._search(edges, len(tokens))
        cands: dict[str, tuple[float, tuple[_Edge, ...]]] = {}
        for score, path in paths:
            out = self._render(norm, tokens, path)
            if out not in cands or cands[out][0] < score:
                cands[out] = (score, path)
        cands.setdefault(norm, (typed_score, tuple(sorted(typed, key=lambda e: e.start))))
        ranked = sorted(cands.items(), key=lambda kv: -kv[1][0])[: self.config.max_candidates]
        if all(t != norm for t, _ in ranked):
            ranked[-1] = (norm, cands[norm])
        top = max(s for _, (s, _) in ranked)
        weights = [math.exp(s - top) for _, (s, _) in ranked]
        total = sum(weights)
        candidates = [(t, round(w / total, 4)) for (t, _), w in zip(ranked, weights)]
        best_text, (best_score, best_path) = ranked[0]
        changed = best_text != norm and best_score - cands[norm][0] >= self.config.min_gain
        if not changed:
            return Correction(text, text, False, candidates)
        edits = [Edit(norm[tokens[e.start].start:tokens[e.end - 1].end], _join(e.words), e.kind,
                      tokens[e.start].start, tokens[e.end - 1].end) for e in best_path if e.kind is not None]
        return Correction(text, best_text, True, candidates, edits)

    def _as_typed(self, tokens: list[_Token]) -> bool:
        """True when the lattice would hold the typed tokens alone (`_edges` finds no other edge), so the
        answer is the query as typed, found without the bigram model or the edit tables: no Han, nothing
        untrusted, no join into a known word, no run of letters that could be pinyin."""
        lex, cfg = self.lexicon, self.config
        for i, tok in enumerate(tokens):
            if tok.han or not (tok.trusted or tok.fixed):
                return False
            if lex.pinyin and tok.alpha and not (tok.trusted and len(tok.text) > 1) and tok.text not in lex.protected:
                return False
            nxt = tokens[i + 1] if i + 1 < len(tokens) else None
            if (nxt is not None and tok.alpha and nxt.alpha
                    and not (tok.text in lex.protected or nxt.text in lex.protected)
                    and lex.df(tok.text + nxt.text) >= cfg.min_target_df):
                return False
        return True

    # ---- tokens -------------------------------------------------------------------------------
    def _tokens(self, norm: str) -> list[_Token]:
        spans = quantity_spans(norm)
        out: list[_Token] = []
        for tok in tokenize(norm, han="char"):
            han = bool(HAN.match(tok.text))
            if han and out and out[-1].han and out[-1].end == tok.start:
                prev = out.pop()
                tok = type(tok)(prev.text + tok.text, prev.start, tok.end)
            in_quantity = any(s < tok.end and tok.start < e for s, e in spans)
            if han:
                out.append(_Token(tok.text, tok.start, tok.end, True, False, in_quantity, False))
                continue
            word = tok.text
            alpha = word.isalpha()
            fixed = (in_quantity or not alpha or len(word) == 1 or word in self.lexicon.protected
                     or word in self._stop)
            out.append(_Token(word, tok.start, tok.end, False, alpha, fixed,
                              fixed or self.lexicon.known(word, self.config.trust_df)))
        return [self._trust_han(t) if t.han else t for t in out]

    def _trust_han(self, tok: _Token) -> _Token:
        lex, trust = self.lexicon, self.config.trust_df
        pieces = [t.text for t in maximal_tokens(tokenize(tok.text, "jieba"))]
        trusted = tok.fixed or tok.text in lex.protected or lex.df(tok.text) >= trust or all(
            lex.df(p) >= trust or p in lex.protected for p in pieces)
        return _Token(tok.text, tok.start, tok.end, True, False, tok.fixed, trusted)

    # ---- lattice ------------------------------------------------------------------------------
    def _edges(self, tokens: list[_Token]) -> list[_Edge]:
        cfg = self.config
        edges: list[_Edge] = []
        for i, tok in enumerate(tokens):
            if tok.han:
                paths = [] if tok.trusted else self._han_paths(tok.text)
                typed = self._han_typed(tok.text)
                edges.append(_Edge(i, i + 1, typed, 0.0, None))
                edges.extend(_Edge(i, i + 1, words, cost, kind) for words, cost, kind in paths if words != typed)
                continue
            edges.append(_Edge(i, i + 1, (tok.text,), 0.0, None))
            if not (tok.trusted or tok.fixed):
                edges.extend(_Edge(i, i + 1, (w,), c, "spelling") for w, c in self._spellings(tok.text))
                edges.extend(_Edge(i, i + 1, parts, cfg.split_cost, "split") for parts in self._splits(tok.text))
                if 2 <= len(tok.text) <= 4 and (word := self._initial_word(tok.text)):
                    edges.append(_Edge(i, i + 1, (word,), cfg.initials_cost, "initials"))
            nxt = tokens[i + 1] if i + 1 < len(tokens) else None
            if (nxt is not None and tok.alpha and nxt.alpha
                    and not (tok.text in self.lexicon.protected or nxt.text in self.lexicon.protected)):
                joined = tok.text + nxt.text
                if self.lexicon.df(joined) >= cfg.min_target_df:
                    cost = cfg.join_known_cost if tok.trusted and nxt.trusted else cfg.join_cost
                    edges.append(_Edge(i, i + 2, (joined,), cost, "join"))
        edges.extend(self._pinyin_edges(tokens))
        return edges

    def _spellings(self, word: str) -> list[tuple[str, float]]:
        """Vocabulary words within the allowed edit distance, with their channel cost."""
        from rapidfuzz import process
        from rapidfuzz.distance import OSA

        cfg = self.config
        limit = 2 if len(word) >= cfg.two_edit_len else 1 if len(word) >= cfg.one_edit_len else 0
        if not limit:
            return []
        out = []
        for length in range(len(word) - limit, len(word) + limit + 1):
            pool = self._by_length.get(length)
            if not pool:
                continue
            for cand, dist, _ in process.extract(word, pool, scorer=OSA.distance, score_cutoff=limit, limit=None):
                if cand == word:
                    continue
                doubling = _squeeze(cand) == _squeeze(word)
                cost = dist * (cfg.double_letter_cost if doubling else cfg.edit_cost)
                if cand[0] != word[0]:
                    cost += cfg.first_letter_cost
                out.append((cand, cost))
        out.sort(key=lambda wc: wc[1] - math.log(self._count(wc[0]) + 1))
        return out[:20]

    def _splits(self, word: str) -> list[tuple[str, str]]:
        lex, cfg = self.lexicon, self.config
        out = []
        for k in range(1, len(word)):
            a, b = word[:k], word[k:]
            if lex.df(a) < cfg.trust_df or lex.df(b) < cfg.trust_df:
                continue
            if (len(a) == 1 or len(b) == 1 or a in self._stop or b in self._stop) and not lex.bigram(a, b):
                continue  # t shirt: a letter or function word only where the titles pair it so
            out.append((a, b))
        return out

    def _initial_word(self, letters: str) -> str | None:
        words = self._pinyin.initials.get(letters)
        if not words:
            return None
        dfs = [self.lexicon.df(w) for w in words]
        return words[0] if dfs[0] >= self.config.initials_dominance * sum(dfs) else None

    def _pinyin_edges(self, tokens: list[_Token]) -> list[_Edge]:
        """Runs of unknown Latin words read as full pinyin of catalog words (pingguo shouji -> 苹果手机)."""
        if not self._pinyin.typed:
            return []
        edges = []
        for i in range(len(tokens)):
            letters = ""
            for j in range(i, min(len(tokens), i + 6)):
                tok = tokens[j]
                if not tok.alpha or (tok.trusted and len(tok.text) > 1) or tok.text in self.lexicon.protected:
                    break
                letters += tok.text
                for words in self._segment_typed(letters):
                    edges.append(_Edge(i, j + 1, words, self.config.pinyin_cost * len(words), "pinyin"))
        return edges

    def _segment_typed(self, letters: str, keep: int = 3) -> list[tuple[str, ...]]:
        """Best ways to read `letters` as concatenated pinyin of vocabulary words."""
        n = len(letters)
        best: list[list[tuple[float, tuple[str, ...]]]] = [[] for _ in range(n + 1)]
        best[0] = [(0.0, ())]
        for i in range(n):
            if not best[i]:
                continue
            for j in range(i + 1, min(n, i + self._longest_typed) + 1):
                for word in self._pinyin.typed.get(letters[i:j], ())[:3]:
                    gain = self._unigram(word) - self.config.pinyin_cost
                    best[j].extend((s + gain, words + (word,)) for s, words in best[i])
                best[j] = heapq.nlargest(keep, best[j])
        return [words for _, words in best[n]]

    def _han_typed(self, run: str) -> tuple[str, ...]:
        return tuple(t.text for t in maximal_tokens(tokenize(run, "jieba")))

    def _han_paths(self, run: str, keep: int = 4, longest: int = 6) -> list[tuple[tuple[str, ...], float, str]]:
        """Segmentations of a Han run into vocabulary words read the same (or nearly) in pinyin."""
        from pypinyin import Style, pinyin

        cfg, lex = self.config, self.lexicon
        readings = [sorted(set(r)) for r in pinyin(run, style=Style.NORMAL, heteronym=True)]
        n = len(run)
        best: list[list[tuple[float, tuple[str, ...], float, bool]]] = [[] for _ in range(n + 1)]
        best[0] = [(0.0, (), 0.0, False)]
        for i in range(n):
            if not best[i]:
                continue
            for j in range(i + 1, min(n, i + longest) + 1):
                seg = run[i:j]
                options: dict[str, tuple[float, bool]] = {}
                if j == i + 1 or lex.df(seg):
                    options[seg] = (0.0, False)
                if j > i + 1 and seg not in lex.protected:
                    for combo in _limited_product(readings[i:j]):
                        for word in self._pinyin.syllables.get(" ".join(combo), ())[:4]:
                            options.setdefault(word, (cfg.homophone_cost * _diff(word, seg), False))
                        for word in self._pinyin.fuzzy.get(" ".join(map(_fuzzy, combo)), ())[:4]:
                            options.setdefault(word, (cfg.fuzzy_pinyin_cost * _diff(word, seg), True))
                for word, (cost, fuzzy) in options.items():
                    gain = self._unigram(word) - cost
                    best[j].extend((s + gain, words + (word,), c + cost, f or (fuzzy and cost > 0))
                                   for s, words, c, f in best[i])
                best[j] = heapq.nlargest(keep, best[j], key=lambda h: h[0])
        return [(words, cost, "fuzzy_pinyin" if fuzzy else "homophone") for _, words, cost, fuzzy in best[n]
                if cost > 0]

    # ---- scoring ------------------------------------------------------------------------------
    def _count(self, word: str) -> float:
        return self.lexicon.cf(word) + self.config.log_weight * self.lexicon.log_words.get(word, 0)

    def _unigram(self, word: str) -> float:
        return math.log(max(self._count(word), self.config.unseen_count) / self._total)

    def _logp(self, word: str, prev: str | None) -> float:
        uni = self._unigram(word)
        context = self._context.get(prev, 0.0) if prev is not None else 0.0
        if not context or prev is None:
            return uni
        lam = self.config.bigram_weight
        return math.log(lam * self.lexicon.bigram(prev, word) / context + (1 - lam) * math.exp(uni))

    def _edge_score(self, edge: _Edge, prev: str | None) -> float:
        score = -edge.cost
        for word in edge.words:
            score += self._logp(word, prev)
            prev = word
        return score

    def _path_score(self, path: Sequence[_Edge]) -> float:
        score, prev = 0.0, None
        for edge in path:
            score += self._edge_score(edge, prev)
            prev = edge.words[-1] if edge.words else prev
        return score

    def _search(self, edges: list[_Edge], n: int) -> list[tuple[float, tuple[_Edge, ...]]]:
        """Beam search over the lattice: the best few complete paths."""
        starting: dict[int, list[_Edge]] = defaultdict(list)
        for e in edges:
            starting[e.start].append(e)
        beams: list[list[tuple[float, int, tuple[_Edge, ...]]]] = [[] for _ in range(n + 1)]
        beams[0] = [(0.0, 0, ())]
        tie = 0
        for pos in range(n):
            beams[pos] = heapq.nlargest(self.config.beam, beams[pos], key=lambda h: h[0])
            for score, _, path in beams[pos]:
                prev = path[-1].words[-1] if path and path[-1].words else None
                for e in starting[pos]:
                    tie += 1
                    beams[e.end].append((score + self._edge_score(e, prev), tie, path + (e,)))
        final = heapq.nlargest(self.config.beam, beams[n], key=lambda h: h[0])
        return [(score, path) for score, _, path in final]

    def _render(self, norm: str, tokens: list[_Token], path: Sequence[_Edge]) -> str:
        """The query text with each changed span replaced (untouched text kept as typed); Han words
        from neighbouring replacements run together (pingguo shouji -> 苹果手机)."""
        out, cursor, prev = [], 0, None
        for e in path:
            start, end = tokens[e.start].start, tokens[e.end - 1].end
            text = norm[start:end] if e.kind is None else _join(e.words)
            gap = norm[cursor:start]
            if (prev is not None and prev.kind is not None and e.kind is not None and not gap.strip()
                    and out and out[-1] and HAN.match(out[-1][-1]) and HAN.match(text[0])):
                gap = ""
            out += [gap, text]
            cursor, prev = end, e
        out.append(norm[cursor:])
        return "".join(out)


# ---------------------------------------------------------------- helpers

_FUZZY_INITIALS = (("zh", "z"), ("ch", "c"), ("sh", "s"), ("n", "l"), ("f", "h"), ("r", "l"))


def _fuzzy(syllable: str) -> str:
    """A near-homophone key: zh/z, ch/c, sh/s, n/l, f/h, r/l and -ng/-n finals fold together."""
    for a, b in _FUZZY_INITIALS:
        if syllable.startswith(a):
            syllable = b + syllable[len(a):]
            break
    if syllable.endswith("ng") and not syllable.endswith("ong"):
        syllable = syllable[:-1]
    return syllable


def _limited_product(readings: list[list[str]], cap: int = 32) -> list[tuple[str, ...]]:
    out = []
    for combo in product(*readings):
        out.append(combo)
        if len(out) >= cap:
            break
    return out


def _diff(a: str, b: str) -> int:
    return sum(x != y for x, y in zip(a, b)) + abs(len(a) - len(b))


def _squeeze(word: str) -> str:
    return "".join(c for i, c in enumerate(word) if i == 0 or c != word[i - 1])


def _join(words: Sequence[str]) -> str:
    """Words as query text: Han words run together, other words separated by spaces."""
    out = ""
    for w in words:
        if out and not (HAN.match(out[-1]) and HAN.match(w[0])):
            out += " "
        out += w
    return out


_AT_LEAST_0 = option_check(lambda v: v >= 0, "a non-negative integer")


@dataclass(frozen=True)
class SpellOptions(SpellConfig):
    """`[query.spell]`: the `decide` policy, a query-log file, and any `SpellConfig` weight by name."""

    few: int = field(default=0, metadata=_AT_LEAST_0)
    plenty: int = field(default=1, metadata=_AT_LEAST_0)
    suggest_min: int = field(default=1, metadata=_AT_LEAST_0)
    log: str | None = None


@QUERY_STEPS.register("spell")
class SpellRewriter:
    """Query step `spell`: searches the correction when the query as typed finds (almost) nothing and
    the correction finds plenty; otherwise keeps the query and offers "did you mean".

    Options (`[query.spell]`): `few`, `plenty`, `suggest_min` (see `decide`), `log` (a query-log file),
    and any `SpellConfig` weight by name."""

    def __init__(self, searcher, options: dict[str, Any] | None = None):
        from souk.errors import ConfigError
        from souk.query.lexicon import load_lexicon

        opts = parse_options("query.spell", options, SpellOptions)
        policy = {"few": opts.few, "plenty": opts.plenty, "suggest_min": opts.suggest_min}
        log = opts.log
        try:
            decide(0, 0, **policy)
        except ValueError as e:
            raise ConfigError(f"query.spell: {e}") from None
        from souk.query.refresh import refreshing

        self.searcher = searcher
        config = SpellConfig(**{k: getattr(opts, k) for k in SpellConfig.__dataclass_fields__})

        def build(snapshot) -> tuple[Lexicon, Speller]:
            lexicon = load_lexicon(snapshot)
            if log is not None:
                lexicon = lexicon.with_log(log)
            speller = Speller(lexicon, config)
            return lexicon, speller.prepare() if _EAGER[0] else speller

        # one speller per index and options, rebuilt in the background after a commit (the previous
        # commit's speller serves meanwhile: a server never waits seconds for a lexicon)
        cache_key = ("speller", str(Path(searcher.path).resolve()), str(log), repr(sorted((options or {}).items())))
        self._source = refreshing(cache_key, "lexicon", build, ("souk.query.lexicon:prepare_cache", [cache_key[1]]))
        self._source.get(searcher)
        self.policy = policy

    @property
    def lexicon(self) -> Lexicon:
        return self._source.get(self.searcher)[0]

    @property
    def speller(self) -> "Speller":
        return self._source.get(self.searcher)[1]

    def rewrite(self, plan):
        from souk.index.searcher import MAX_QUERY_CHARS

        if not plan.text.strip() or plan.syntax.has_operators:
            return plan  # quoted phrases and +/- words are typed on purpose
        lexicon, speller = self._source.get(self.searcher)
        correction = speller.correct(plan.text)
        if not correction.changed or len(correction.corrected) > MAX_QUERY_CHARS:
            return plan  # (the limit applies to what the user typed: a rewrite never breaks it)
        typed, fixed = correction_hits(self.searcher, lexicon, correction)
        decision = decide(typed, fixed, **self.policy)
        plan.corrections.append({**correction.to_dict(), "decision": decision, "hits": [typed, fixed]})
        if decision == "rewrite":
            plan.notes.append(f"showing results for {correction.corrected!r}: {plan.text!r} found {typed} documents")
            plan.text = correction.corrected
        elif decision == "suggest":
            plan.did_you_mean = correction.corrected
        return plan
