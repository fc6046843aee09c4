"""The index vocabulary a speller needs: words with document and collection frequencies, the analyzed
terms of the search fields, word bigrams, protected tokens and the pinyin of Chinese words.

Built from a searcher's stored documents, analyzed with the analyzers the fields use, and cached per
commit in `INDEX/cache/lexicon-<commit_id>.json` (written atomically), so it is built once per commit:
`load_lexicon(searcher)`. A query log (one query a line) adds query-side frequencies: `with_log(path)`.

Words are surface forms (normalized, unstemmed: what a user types and what a correction shows); terms
are the index terms (stemmed), used to tell whether a typed word is already known in some form.
Misuse: building a lexicon per query (build once per commit; the Speller keeps it).
"""
from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from souk.analysis.filters import stem
from souk.analysis.normalize import HAN, has_han
from souk.analysis.registry import get_analyzer
from souk.analysis.tokenize import Token
from souk.errors import DatasetError

FORMAT = 3  # 3: bigrams in a file of their own, read on first use; words and terms as columns
PROTECTED_HINTS = ("brand", "maker", "manufacturer", "vendor", "model", "mpn", "series")
MAX_BIGRAM_WORDS = 64  # per field value: titles and brands are short; long texts add little context


@dataclass
class Lexicon:
    """Frequencies of one commit. Invariant: every word of `bigrams` and `pinyin` is in `words`."""

    docs: int = 0
    words: dict[str, list[int]] = field(default_factory=dict)  # word -> [df, cf]
    terms: dict[str, int] = field(default_factory=dict)  # analyzed index term -> df
    bigrams: Mapping[str, int] = field(default_factory=dict)  # "w1 w2" -> count (first words of each field value)
    protected: set[str] = field(default_factory=set)  # brands, model numbers: never corrected
    pinyin: dict[str, str] = field(default_factory=dict)  # Han word -> toneless syllables "ping guo"
    commit_id: str = ""
    log_words: Counter = field(default_factory=Counter)
    log_bigrams: Counter = field(default_factory=Counter)
    log_queries: int = 0

    def df(self, word: str) -> int:
        """Documents containing `word` (0 when unknown)."""
        entry = self.words.get(word)
        return entry[0] if entry else 0

    def cf(self, word: str) -> int:
        """Occurrences of `word` in the collection."""
        entry = self.words.get(word)
        return entry[1] if entry else 0

    def term_df(self, term: str) -> int:
        return self.terms.get(term, 0)

    def known(self, word: str, min_df: int = 1) -> bool:
        """True when the word, its stem or the query log vouch for it at least `min_df` times."""
        return (self.df(word) >= min_df or self.term_df(word) >= min_df or self.term_df(stem(word)) >= min_df
                or self.log_words.get(word, 0) >= min_df)

    def bigram(self, first: str, second: str) -> int:
        return self.bigrams.get(f"{first} {second}", 0) + self.log_bigrams.get(f"{first} {second}", 0)

    def with_log(self, path: str | Path) -> "Lexicon":
        """A copy with the words and bigrams of a query log (one query a line) counted in."""
        path = Path(path)
        if not path.is_file():
            raise DatasetError(f"query log {path} does not exist; pass a text file with one query a line")
        words: Counter[str] = Counter()
        bigrams: Counter[str] = Counter()
        n = 0
        with path.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.strip():
                    n += 1
                    seq = surface_words(line)
                    words.update(seq)
                    bigrams.update(f"{a} {b}" for a, b in zip(seq, seq[1:]))
        return Lexicon(self.docs, self.words, self.terms, self.bigrams, self.protected, self.pinyin, self.commit_id,
                       self.log_words + words, self.log_bigrams + bigrams, self.log_queries + n)

    def to_dict(self) -> dict[str, Any]:
        """The cached form: words and terms as columns (a third quicker to read back than objects of lists)."""
        return {"format": FORMAT, "commit_id": self.commit_id, "docs": self.docs,
                "words": {"word": list(self.words), "df": [e[0] for e in self.words.values()],
                          "cf": [e[1] for e in self.words.values()]},
                "terms": {"term": list(self.terms), "df": list(self.terms.values())},
                "bigrams": dict(self.bigrams), "protected": sorted(self.protected), "pinyin": self.pinyin}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Lexicon":
        words, terms = data["words"], data["terms"]
        if not (len(words["word"]) == len(words["df"]) == len(words["cf"]) and len(terms["term"]) == len(terms["df"])):
            raise ValueError("lexicon columns of different lengths")
        return cls(data["docs"], dict(zip(words["word"], map(list, zip(words["df"], words["cf"])))),
                   dict(zip(terms["term"], terms["df"])), data["bigrams"], set(data["protected"]), data["pinyin"],
                   data.get("commit_id", ""))


def maximal_tokens(tokens: Sequence[Token]) -> list[Token]:
    """Left-to-right tokens not inside another's span: drops jieba search mode's overlapping sub-words."""
    out: list[Token] = []
    for tok in sorted(tokens, key=lambda t: (t.start, -t.end)):
        if not out or tok.start >= out[-1].end:
            out.append(tok)
    return out


def surface_words(text: str, user_dict: str | None = None) -> list[str]:
    """The words of `text` as a user sees them: normalized, unstemmed, stopwords kept, Han text as
    maximal jieba words."""
    analyzer = get_analyzer("simple", user_dict)
    if not has_han(text):
        return analyzer.terms(text)
    return [t.text for t in maximal_tokens(analyzer.tokens(text))]


def build_lexicon(searcher, progress: bool = False) -> Lexicon:
    """Read every stored document of the searcher's commit and count its words, terms and bigrams."""
    from souk.index.store import SOURCE
    from souk.progress import progress_bar

    schema = searcher.schema
    user_dict = schema.analysis.get("user_dict")
    simple = get_analyzer("simple", user_dict)
    plan = []  # (source field, the analyzer of the field searching it)
    for name in schema.search_fields:
        f = schema.fields[name]
        for src in f.copy_from or [f.name]:
            plan.append((src, get_analyzer(schema.analyzer_of(f), user_dict)))
    brand_sources = [n for n, f in schema.fields.items()
                     if f.kind in ("keyword", "text") and n != schema.id_field
                     and any(h in n.lower() for h in PROTECTED_HINTS)]

    _, blobs = searcher.stored_bytes(SOURCE)
    all_words: list[str] = []  # counted once at the end: one Counter per document is the slow part
    doc_word_sets: list[str] = []
    doc_term_sets: list[str] = []
    pairs: list[str] = []
    protected: set[str] = set()
    with progress_bar("lexicon", len(blobs), enabled=progress) as advance:
        for blob in blobs:
            source = json.loads(blob) if blob else {}
            doc_words: set[str] = set()
            doc_terms: set[str] = set()
            done: set[tuple[str, str]] = set()
            for src, analyzer in plan:
                texts = _texts(source.get(src))
                if (src, analyzer.name) not in done:
                    done.add((src, analyzer.name))
                    for text in texts:
                        doc_terms.update(analyzer.terms(text))
                if (src, "") in done:
                    continue  # a source shared by several fields counts once
                done.add((src, ""))
                for text in texts:
                    sequence, words = _analyze(simple, text)
                    all_words += words
                    doc_words.update(words)
                    head = sequence[:MAX_BIGRAM_WORDS]
                    pairs += [f"{a} {b}" for a, b in zip(head, head[1:])]
            for src in brand_sources:
                for text in _texts(source.get(src)):
                    protected.update(surface_words(text, user_dict))
            doc_word_sets += doc_words
            doc_term_sets += doc_terms
            advance()
    df, cf, term_df, bigrams = Counter(doc_word_sets), Counter(all_words), Counter(doc_term_sets), Counter(pairs)
    protected.update(w for w in df if _mixed(w))
    return Lexicon(
        docs=len(blobs), words={w: [df[w], cf[w]] for w in df}, terms=dict(term_df), bigrams=dict(bigrams),
        protected=protected, pinyin=_pinyin_of(w for w in df if len(w) > 1 and _all_han(w)),
        commit_id=searcher.commit_id,
    )


def lexicon_path(index_dir: Path, commit_id: str) -> Path:
    return Path(index_dir) / "cache" / f"lexicon-{commit_id}.json"


def bigrams_path(index_dir: Path, commit_id: str) -> Path:
    """The cached bigrams, apart from the rest (most of the bytes: a query of trusted words never reads them)."""
    return Path(index_dir) / "cache" / f"lexicon-{commit_id}-bigrams.json"


class _LazyBigrams(Mapping[str, int]):
    """The bigram counts of a cached lexicon, read from their file on first use; a missing or corrupt file
    rebuilds them (`rebuild`) rather than leave the speller without context."""

    def __init__(self, path: Path, rebuild: Callable[[], Mapping[str, int]]):
        self._path = path
        self._rebuild: Callable[[], Mapping[str, int]] | None = rebuild  # (holds a searcher: dropped once read)
        self._data: Mapping[str, int] | None = None
        self._lock = threading.Lock()

    @property
    def data(self) -> Mapping[str, int]:
        if self._data is None:
            with self._lock:  # (server threads: read once)
                if self._data is None:
                    self._data = self._read()
                    self._rebuild = None
        return self._data

    def _read(self) -> Mapping[str, int]:
        try:
            data = json.loads(self._path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not an object")
            return data
        except (OSError, ValueError):
            assert self._rebuild is not None
            return self._rebuild()

    def __getitem__(self, key: str) -> int:
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


def load_lexicon(searcher, cache: bool = True, progress: bool = False) -> Lexicon:
    """The lexicon of the searcher's commit, from the cache when built before (else built and cached).

    A read-only index directory only loses the cache, never the lexicon.
    """
    from souk.files import write_json_atomic

    path = lexicon_path(searcher.path, searcher.commit_id)
    pairs = bigrams_path(searcher.path, searcher.commit_id)
    if cache and path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") == FORMAT:
                data["bigrams"] = _LazyBigrams(pairs, lambda: build_lexicon(searcher).bigrams)
                return Lexicon.from_dict(data)
        except (OSError, ValueError, KeyError, AttributeError, TypeError):
            pass  # corrupt or foreign cache: rebuild it
    lexicon = build_lexicon(searcher, progress=progress)
    if cache:
        try:
            path.parent.mkdir(exist_ok=True)
            write_json_atomic(pairs, dict(lexicon.bigrams))  # (first: a core file always has its bigrams)
            write_json_atomic(path, {**lexicon.to_dict(), "bigrams": None})
            for stale in path.parent.glob("lexicon-*.json"):
                if stale not in (path, pairs):
                    stale.unlink(missing_ok=True)
        except OSError:
            pass
    return lexicon


def prepare_cache(index_dir: str) -> None:
    """Build and cache the lexicon of the index's newest commit (run in a child process by a server's
    background rebuild, see `souk.query.refresh`)."""
    from souk.index import Index

    load_lexicon(Index.open(index_dir).searcher())


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str) and v]
    return []


def _analyze(simple, text: str) -> tuple[list[str], list[str]]:
    """(the word sequence for bigrams, every word to count): jieba's overlapping sub-words (手机 inside
    手机壳) count as words but stay out of the sequence."""
    if not has_han(text):
        words = simple.terms(text)
        return words, words
    tokens = simple.tokens(text)
    return [t.text for t in maximal_tokens(tokens)], [t.text for t in tokens]


def _mixed(word: str) -> bool:
    """Letters and digits in one token: model numbers (xr500, s24) and glued sizes (20v)."""
    return any(c.isdigit() for c in word) and any(c.isalpha() for c in word)


def _all_han(word: str) -> bool:
    return all(HAN.match(c) for c in word)


def _pinyin_of(words: Iterable[str]) -> dict[str, str]:
    words = list(words)
    if not words:
        return {}  # (an English index never imports pypinyin)
    from pypinyin import lazy_pinyin

    return {w: " ".join(lazy_pinyin(w)) for w in words}

