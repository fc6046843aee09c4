"""Autocomplete: what might the user be typing?

Completions come from four sources, weighted by frequency: the query log (what people search), catalog
entities (brand and category values), frequent title phrases (word n-grams of titles, prefixes
included, found in at least two titles) and whole titles. A prefix matches completions after souk's
normalization (case, full/half width, traditional to simplified), as pinyin (`pingg` -> 苹果) and as
pinyin initials (`pg` -> 苹果), and with one typo (insertion, deletion, substitution or transposition
after the first character) for ASCII prefixes of at least `typo_min_chars` characters when exact
matches are too few.

Data structure: sorted key arrays searched with bisect; a prefix is a contiguous range, its best
completions an argpartition over the range's weights (cached for large ranges); the one-typo walk
enumerates only characters that occur at each position, like a trie walk. Built once per index commit
and cached on disk under `IDX/cache/`. Misuse: building a Suggester per request; build (or load) it once
per searcher and share it.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
import zipfile
from bisect import bisect_left
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from souk.analysis.filters import english_stopwords
from souk.analysis.normalize import HAN, HAN_CLASS, normalize
from souk.analysis.tokenize import in_dictionary
from souk.errors import QueryError
from souk.query import documents
from souk.query.pinyin import pinyin_keys, span_keys, syllables, typed_key
from souk.query.querylog import read_query_log
from souk.query.words import word_runs

if TYPE_CHECKING:
    from souk.index.searcher import Searcher

FORMAT = 1
SOURCES = ("log", "entity", "title", "phrase")
TABLES = ("text", "pinyin", "initials")
MAX_PREFIX_CHARS = 200
_BIG_RANGE = 2048
_CACHED_TOP = 64
_HAN_GAP = re.compile(f"(?<=[{HAN_CLASS}]) (?=[{HAN_CLASS}])")
_LATIN = re.compile("[a-z]")
_PARTICLES = frozenset("的 了 和 与 及 或 之 等 在 是 为 有 装 克 个 只 包 片 条 支 瓶 盒 件 套")
_TIERS = {"prefix": 0, "pinyin": 0, "initials": 0, "word": 1, "typo": 2}


@dataclass(frozen=True)
class SuggestConfig:
    """How completions are collected and weighted (a completion's weight sums over its sources)."""

    max_words: int = 3  # longest title phrase, in words
    min_phrase_titles: int = 2  # a phrase must occur in this many titles
    max_title_chars: int = 100  # longer titles are not offered whole (their phrases still are)
    log_weight: float = 3.0  # per logged search
    entity_weight: float = 2.0  # per document with that brand/category value
    title_weight: float = 1.0  # per document with that title
    phrase_weight: float = 1.0  # per title containing the phrase
    pinyin_factor: float = 0.9
    initials_factor: float = 0.8
    word_factor: float = 0.3  # completing only the last word of a longer prefix
    typo_factor: float = 0.5
    typo_min_chars: int = 4

    def digest(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Suggestion:
    """One completion: `source` is where its weight mostly comes from; `match` how the prefix met it
    (prefix, pinyin, initials or typo)."""

    text: str
    score: float
    source: str
    match: str = "prefix"

    def to_dict(self) -> dict:
        return {"text": self.text, "score": round(self.score, 4), "source": self.source, "match": self.match}


def completion_key(text: str) -> str:
    """The matching form of a completion: normalized, single spaces, no spaces between Han characters."""
    return _HAN_GAP.sub("", " ".join(normalize(text).split()))


def prefix_key(prefix: str) -> str:
    """The matching form of a typed prefix (a trailing space is kept: `apple ` wants the next word)."""
    key = completion_key(prefix)
    return key + " " if key and prefix[-1:].isspace() else key


class _Table:
    """Sorted keys with the entry each belongs to; a prefix is a contiguous range of rows."""

    def __init__(self, keys: list[str], ids: np.ndarray, entry_weights: np.ndarray):
        self.keys = keys
        self.ids = ids.astype(np.int32, copy=False)
        self.weights = entry_weights[self.ids] if len(self.ids) else np.zeros(0, np.float32)
        self._top: dict[tuple[int, int], np.ndarray] = {}

    @classmethod
    def from_pairs(cls, pairs: list[tuple[str, int]], entry_weights: np.ndarray) -> "_Table":
        pairs.sort()
        return cls([k for k, _ in pairs], np.fromiter((i for _, i in pairs), np.int32, len(pairs)), entry_weights)

    def span(self, prefix: str, lo: int = 0, hi: int | None = None) -> tuple[int, int]:
        hi = len(self.keys) if hi is None else hi
        start = bisect_left(self.keys, prefix, lo, hi)
        return start, bisect_left(self.keys, prefix + "\U0010ffff", start, hi)

    def top(self, lo: int, hi: int, k: int) -> np.ndarray:
        """The k heaviest rows in [lo, hi), heaviest first (`ids[rows]` are their entries)."""
        if hi - lo > _BIG_RANGE and k <= _CACHED_TOP:
            best = self._top.get((lo, hi))
            if best is None:
                if len(self._top) > 4096:
                    self._top.clear()
                best = self._top[(lo, hi)] = self._best(lo, hi, _CACHED_TOP)
            return best[:k]
        return self._best(lo, hi, k)

    def _best(self, lo: int, hi: int, k: int) -> np.ndarray:
        w = self.weights[lo:hi]
        if len(w) > k:
            part = np.argpartition(-w, k - 1)[:k]
            order = part[np.argsort(-w[part], kind="stable")]
        else:
            order = np.argsort(-w, kind="stable")
        return lo + order

    def next_chars(self, depth: int, lo: int, hi: int) -> Iterator[tuple[str, int, int]]:
        """Distinct characters at position `depth` among rows [lo, hi) sharing a `depth`-char prefix."""
        keys, i = self.keys, lo
        while i < hi and len(keys[i]) <= depth:
            i += 1
        while i < hi:
            c = keys[i][depth]
            j = bisect_left(keys, keys[i][:depth] + chr(ord(c) + 1), i, hi) if ord(c) < 0x10FFFF else hi
            yield c, i, j
            i = j


class Suggester:
    """Completions for prefixes. Build with `Suggester.build(searcher, ...)` or `from_texts(...)`."""

    def __init__(self, displays: list[str], weights: np.ndarray, sources: np.ndarray,
                 tables: dict[str, _Table], config: SuggestConfig, info: dict | None = None):
        self.displays = displays
        self.weights = weights
        self.sources = sources
        self.tables = tables
        self.config = config
        self.info = dict(info or {})
        self.info.setdefault("completions", len(displays))
        if tables["pinyin"].keys:
            typed_key("中")  # load pypinyin's dictionaries now rather than on the first query

    # ---- building ------------------------------------------------------------------------------
    @classmethod
    def from_texts(cls, titles: Iterable[Sequence[str]], entities: Iterable[Sequence[str]] = (),
                   log: Mapping[str, int] | None = None, config: SuggestConfig | None = None) -> "Suggester":
        """Build from raw texts: `titles` and `entities` hold one sequence of values per document."""
        cfg = config or SuggestConfig()
        t0 = time.perf_counter()
        phrase_titles: Counter[str] = Counter()
        title_docs: Counter[str] = Counter()
        title_display: dict[str, str] = {}
        read: list[tuple[str, list[str | None]]] = []  # Han titles with their syllables (read in context)
        first_read: dict[str, tuple[int, int, int]] = {}  # completion -> (title in `read`, start, end)
        docs = 0
        for values in titles:
            docs += 1
            doc_titles: set[str] = set()
            doc_phrases: set[str] = set()
            for value in values:
                key = completion_key(value)
                if not key or key in doc_titles:
                    continue
                doc_titles.add(key)
                runs = list(word_runs(key))
                spans = list(phrase_spans(key, cfg.max_words, runs))
                doc_phrases.update(key[a:b] for a, b in spans)
                if HAN.search(key):
                    read.append((key, syllables(key, (w for run in runs for w in run))))
                    for a, b in [*spans, (0, len(key))]:
                        first_read.setdefault(key[a:b], (len(read) - 1, a, b))
                if len(key) <= cfg.max_title_chars:
                    title_docs[key] += 1
                    title_display.setdefault(key, " ".join(value.split()))
            phrase_titles.update(doc_phrases)
        entity_docs: Counter[str] = Counter()
        entity_display: dict[str, str] = {}
        for values in entities:
            keys: dict[str, str] = {}
            for value in values:
                key = completion_key(value)
                if key:
                    keys.setdefault(key, " ".join(value.split()))
            entity_docs.update(keys.keys())
            for key, display in keys.items():
                entity_display.setdefault(key, display)
        log_counts: Counter[str] = Counter()
        for query, count in (log or {}).items():
            key = completion_key(query)
            if key and count > 0 and len(key) <= MAX_PREFIX_CHARS:
                log_counts[key] += count

        entries = _Entries()
        for key, n in phrase_titles.items():
            if n >= cfg.min_phrase_titles:
                entries.add(key, key, n * cfg.phrase_weight, 3)
        for key, n in title_docs.items():
            entries.add(key, title_display[key], n * cfg.title_weight, 2)
        for key, n in entity_docs.items():
            entries.add(key, entity_display[key], n * cfg.entity_weight, 1)
        for key, n in log_counts.items():
            entries.add(key, key, n * cfg.log_weight, 0)  # logged queries show in their normalized form
        pinyin_of = {}
        for key in entries.keys:
            where = first_read.get(key)
            if where is not None:
                text, sy = read[where[0]]
                pinyin_of[key] = span_keys(text, sy, where[1], where[2])
        suggester = entries.suggester(cfg, pinyin_of)
        suggester.info.update(titles=docs, build_s=round(time.perf_counter() - t0, 3), cached=False)
        return suggester

    @classmethod
    def build(cls, searcher: "Searcher", fields: Sequence[str] | None = None,
              entity_fields: Sequence[str] | None = None, log: str | Path | Mapping[str, int] | None = None,
              config: SuggestConfig | None = None, cache: bool = True) -> "Suggester":
        """Completions for one index snapshot, from its title fields (default: fields named like
        title/name), entity fields (default: brand/category-like fields) and an optional query log.

        Cached on disk per commit, fields, log and config under `IDX/cache/`; a new commit rebuilds.
        """
        cfg = config or SuggestConfig()
        schema = searcher.schema
        names = documents.check_fields(schema, fields) if fields else documents.title_fields(schema)
        entity_names = (documents.check_fields(schema, entity_fields) if entity_fields is not None
                        else documents.entity_fields(schema, names))
        counts, log_stamp = _log_counts(log)
        digest = hashlib.sha1(json.dumps([FORMAT, names, entity_names, log_stamp, cfg.digest()]).encode()).hexdigest()[
            :12
        ]
        path = Path(searcher.path) / "cache" / f"suggest-{searcher.commit_id}-{digest}.npz"
        if cache and path.is_file():
            try:
                return cls.load(path, cfg)
            except (OSError, ValueError, KeyError, zipfile.BadZipFile):
                pass  # a damaged cache is rebuilt
        t0 = time.perf_counter()
        docs = list(documents.field_values(searcher, names + [n for n in entity_names if n not in names]))
        suggester = cls.from_texts(([v for n in names for v in d[n]] for d in docs),
                                   ([v for n in entity_names for v in d[n]] for d in docs), counts, cfg)
        suggester.info.update(build_s=round(time.perf_counter() - t0, 3), fields=names, entity_fields=entity_names)
        if cache:
            try:
                suggester.save(path)
                for old in path.parent.glob("suggest-*.npz"):
                    if not old.name.startswith(f"suggest-{searcher.commit_id}-"):
                        old.unlink(missing_ok=True)
            except OSError:  # a read-only index (another user's, read-only media): kept in memory only
                pass
        return suggester

    # ---- persistence ---------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write atomically (temp file + rename) so readers never see half a file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = {"displays": _pack(self.displays), "weights": self.weights, "sources": self.sources,
                  "meta": _pack([json.dumps({"format": FORMAT, "config": self.config.digest(), "info": self.info})])}
        for name, table in self.tables.items():
            arrays[f"{name}_keys"] = _pack(table.keys)
            arrays[f"{name}_ids"] = table.ids
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".suggest-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | Path, config: SuggestConfig | None = None) -> "Suggester":
        """Read a saved suggester; ValueError when it is of another format or config."""
        cfg = config or SuggestConfig()
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(_unpack(data["meta"])[0])
            if meta.get("format") != FORMAT or meta.get("config") != cfg.digest():
                raise ValueError("suggester cache of another format or config")
            weights = data["weights"].astype(np.float32)
            tables = {name: _Table(_unpack(data[f"{name}_keys"]), data[f"{name}_ids"], weights) for name in TABLES}
            info = dict(meta.get("info", {}), cached=True)
            return cls(_unpack(data["displays"]), weights, data["sources"], tables, cfg, info)

    # ---- querying ------------------------------------------------------------------------------
    def suggest(self, prefix: str, k: int = 10) -> list[Suggestion]:
        """The k best completions of `prefix`, best first (empty for an empty prefix).

        Exact, pinyin and initials matches come first; when they are fewer than k, completions of
        the last word of a multi-word prefix (`match="word"`), then one-typo matches follow.
        """
        if k < 0:
            raise QueryError("k must be >= 0")
        if len(prefix) > MAX_PREFIX_CHARS:
            raise QueryError(f"prefix of {len(prefix)} characters is too long (max {MAX_PREFIX_CHARS})")
        key = prefix_key(prefix)
        if not key or k == 0:
            return []
        cfg = self.config
        found: dict[int, tuple[float, str]] = {}
        self._take(self.tables["text"], self.tables["text"].span(key), k, 1.0, "prefix", found)
        pinyin, initials = self.tables["pinyin"], self.tables["initials"]
        typed = typed_key(key) if pinyin.keys and _LATIN.search(key) else ""
        if typed:
            self._take(pinyin, pinyin.span(typed), k, cfg.pinyin_factor, "pinyin", found)
            if typed.isascii():
                self._take(initials, initials.span(typed), k, cfg.initials_factor, "initials", found)
        out = [Suggestion(self.displays[i], score, SOURCES[self.sources[i]], how) for i, (score, how) in found.items()]
        if len(found) < k and " " in key.strip():
            out += self._last_word(key, k)
        if len(out) < k and len(key) >= cfg.typo_min_chars and key.isascii():
            variants = (("text", key, cfg.typo_factor), ("pinyin", typed, cfg.typo_factor * cfg.pinyin_factor))
            for name, typed_prefix, factor in variants:
                if typed_prefix:
                    table = self.tables[name]
                    for span in one_typo_spans(table, typed_prefix, _edit_limit(typed_prefix)):
                        self._take(table, span, k, factor, "typo", found)
            out += [Suggestion(self.displays[i], score, SOURCES[self.sources[i]], how)
                    for i, (score, how) in found.items() if how == "typo"]
        out.sort(key=lambda s: (_TIERS[s.match], -s.score, len(s.text), s.text))
        seen: set[str] = set()
        unique = []
        for s in out:
            if s.text.casefold() not in seen:
                seen.add(s.text.casefold())
                unique.append(s)
        return unique[:k]

    def _last_word(self, key: str, k: int) -> list[Suggestion]:
        """Completions of the last, unfinished word that follow the previous word in some completion
        (`garage door o` -> `door opener` -> `garage door opener`), weighted by that word pair."""
        head, _, last = key.rpartition(" ")
        previous = head.rpartition(" ")[2]
        if not previous or not last:
            return []
        table = self.tables["text"]
        pair = f"{previous} {last}"
        lo, hi = table.span(pair)
        out = []
        for row in table.top(lo, hi, 4 * k).tolist() if hi > lo else []:
            word = table.keys[row][len(previous) + 1 :]
            if " " not in word:
                entry = int(table.ids[row])
                score = float(self.weights[entry]) * self.config.word_factor
                out.append(Suggestion(f"{head} {word}", score, SOURCES[self.sources[entry]], "word"))
        return out[:k]

    def _take(self, table: _Table, span: tuple[int, int], k: int, factor: float, how: str,
              found: dict[int, tuple[float, str]]) -> None:
        lo, hi = span
        if hi <= lo:
            return
        for entry in table.ids[table.top(lo, hi, k)].tolist():
            score = float(self.weights[entry]) * factor
            old = found.get(entry)
            if old is None or old[0] < score:
                found[entry] = (score, how)


def _edit_limit(key: str) -> int:
    """Edits stay out of a last word shorter than 3 characters (`garage door o` is not a typo of
    `garage door s`; it is unfinished)."""
    last = key.rpartition(" ")[2]
    return len(key) if len(last) >= 3 else len(key) - len(last)


def suggester_for(searcher: "Searcher", fields: Sequence[str] | None = None, entity_fields: Sequence[str] | None = None,
                  log: str | Path | None = None) -> Suggester:
    """The Suggester of this searcher's index, built (or loaded from `IDX/cache/`) once per commit and
    shared; a server calls this per request with its current searcher. After a commit the previous
    commit's suggester answers while the new one is built in the background (`souk.query.refresh`)."""
    from souk.query.refresh import refreshing

    fields = None if fields is None else list(fields)
    entity_fields = None if entity_fields is None else list(entity_fields)
    key = ("suggester", str(Path(searcher.path).resolve()),
           json.dumps([fields or [], entity_fields, str(log or "")]))
    prepare = ("souk.query.suggest:prepare_cache", [key[1], key[2]])
    return refreshing(key, "suggester", lambda snapshot: Suggester.build(snapshot, fields, entity_fields, log),
                      prepare).get(searcher)


def prepare_cache(index_dir: str, options: str) -> None:
    """Build and cache the suggester of the index's newest commit (`options`: the JSON of `suggester_for`'s
    key; run in a child process by a server's background rebuild, see `souk.query.refresh`)."""
    from souk.index import Index

    fields, entity_fields, log = json.loads(options)
    Suggester.build(Index.open(index_dir).searcher(), fields or None, entity_fields, log or None)


def one_typo_spans(table: _Table, p: str, limit: int | None = None) -> Iterator[tuple[int, int]]:
    """Row ranges of keys starting with a one-edit variant of `p`, edited at a position in
    [1, limit) (the first character is trusted).

    Like a trie walk: at each position only the characters that occur there are tried.
    """
    seen = {table.span(p)}
    for d in range(1, min(len(p), len(p) if limit is None else limit)):
        head_lo, head_hi = table.span(p[:d])
        if head_hi <= head_lo:
            break  # no key starts with p[:d]: no variant edited at d or later can match
        candidates = [table.span(p[:d] + p[d + 1 :], head_lo, head_hi)]  # deletion of p[d]
        if d + 1 < len(p) and p[d] != p[d + 1]:
            candidates.append(table.span(p[:d] + p[d + 1] + p[d] + p[d + 2 :], head_lo, head_hi))  # transposition
        for c, lo, hi in table.next_chars(d, head_lo, head_hi):
            if c != p[d]:
                candidates.append(table.span(p[:d] + c + p[d + 1 :], lo, hi))  # substitution
            candidates.append(table.span(p[:d] + c + p[d:], lo, hi))  # insertion before p[d]
        for span in candidates:
            if span[1] > span[0] and span not in seen:
                seen.add(span)
                yield span


def title_phrases(key: str, max_words: int) -> Iterator[str]:
    """The phrases of `phrase_spans` as strings."""
    return (key[a:b] for a, b in phrase_spans(key, max_words))


def phrase_spans(key: str, max_words: int, runs: list | None = None) -> Iterator[tuple[int, int]]:
    """Spans of word n-grams (1..max_words) of a normalized title that neither start nor end on a
    stopword or a single letter, nor start on a lone Han character (跑步鞋 may end on 鞋, not on 的), nor
    end right before a lone Han character glued to it (jieba's pieces of a word it does not know: 兰蔻持妆
    never gives 兰蔻持, 粉底液遮瑕 never 粉底液遮);
    lone numbers are skipped and punctuation such as ` - ` or `,` ends a phrase. Words come from
    `souk.query.words.word_runs` (pass `runs` when already computed)."""
    stop = english_stopwords()
    for run in word_runs(key) if runs is None else runs:
        start = [len(w) > 1 and w not in stop for w, _, _ in run]
        end = [(ok or (HAN.match(w) is not None and w not in _PARTICLES)) and not _glued_lone(run, j)
               for j, (ok, (w, _, _)) in enumerate(zip(start, run))]
        for i, (w, s, _) in enumerate(run):
            if not start[i]:
                continue
            # not 兰蔻持 of 兰蔻持|妆: a jieba guess of three or more characters with a lone character glued after it
            if not w.isdigit() and not (len(w) > 2 and _glued_lone(run, i) and not in_dictionary(w)):
                yield s, run[i][2]
            for j in range(i + 1, min(i + max_words, len(run))):
                if end[j] and not _cut_number(run, j):
                    yield s, run[j][2]


def _glued_lone(run: list[tuple[str, int, int]], j: int) -> bool:
    """True when Han word j is followed, with no space, by a lone Han character: jieba's pieces of a word it
    does not know (兰蔻持|妆, 粉底液|遮|瑕), so no phrase ends there."""
    if j + 1 >= len(run) or HAN.match(run[j][0]) is None:
        return False
    nxt = run[j + 1]
    return len(nxt[0]) == 1 and nxt[1] == run[j][2] and HAN.match(nxt[0]) is not None


def _cut_number(run: list[tuple[str, int, int]], j: int) -> bool:
    """True when word j is a number glued to the next word (`55` of `55克`): no phrase ends there."""
    return run[j][0].isdigit() and j + 1 < len(run) and run[j + 1][1] == run[j][2]


class _Entries:
    """Accumulates completions by key: the weight sums over sources; display and source come from
    the source that contributed most."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.keys: list[str] = []
        self.displays: list[str] = []
        self.totals: list[float] = []
        self.best: list[float] = []
        self.sources: list[int] = []

    def add(self, key: str, display: str, amount: float, source: int) -> None:
        i = self.index.get(key)
        if i is None:
            self.index[key] = len(self.keys)
            self.keys.append(key)
            self.displays.append(display)
            self.totals.append(amount)
            self.best.append(amount)
            self.sources.append(source)
            return
        self.totals[i] += amount
        if amount >= self.best[i]:
            self.best[i], self.sources[i], self.displays[i] = amount, source, display

    def suggester(self, cfg: SuggestConfig, pinyin_of: Mapping[str, tuple[str, str]]) -> Suggester:
        weights = np.asarray(self.totals, dtype=np.float32)
        text, pinyin, initials = [], [], []
        for i, key in enumerate(self.keys):
            text.append((key, i))
            if HAN.search(key):
                full, init = pinyin_of.get(key) or pinyin_keys(key)
                pinyin.append((full, i))
                initials.append((init, i))
        tables = {"text": _Table.from_pairs(text, weights), "pinyin": _Table.from_pairs(pinyin, weights),
                  "initials": _Table.from_pairs(initials, weights)}
        return Suggester(self.displays, weights, np.asarray(self.sources, dtype=np.int8), tables, cfg)


def _log_counts(log: str | Path | Mapping[str, int] | None) -> tuple[Mapping[str, int] | None, object]:
    """The log's counts and a stamp that changes when the log does (for the cache key)."""
    if log is None:
        return None, None
    if isinstance(log, (str, Path)):
        path = Path(log)
        counts = read_query_log(path)
        st = path.stat()
        return counts, [str(path.resolve()), st.st_mtime_ns, st.st_size]
    items = sorted((str(q), int(c)) for q, c in log.items())
    return dict(items), hashlib.sha1(json.dumps(items, ensure_ascii=False).encode()).hexdigest()


def _pack(strings: list[str]) -> np.ndarray:
    return np.frombuffer("\n".join(strings).encode("utf-8"), dtype=np.uint8)


def _unpack(arr: np.ndarray) -> list[str]:
    text = arr.tobytes().decode("utf-8")
    return text.split("\n") if text else []
