"""The term store: each document's analyzed terms per text field, in order, for ranking features.

tantivy answers "which documents hold this term" but not "which terms, where, does this document hold";
coverage, phrase, span and first-position features need the latter for 100-200 candidates per query.
The store is a forward index built once per commit from the stored documents (the same analyzers as the
keyword index; in the process that wrote the commit, from the terms its writer handed over, `souk.index.handover`),
kept in memory as flat int32 term ids with per-document offsets (so a batch of
candidates is gathered with array ops, never a loop per document), and cached on disk under
`DIR/cache/terms-<commit>/` (a read-only index keeps it in memory only). It also holds the values of
number fields marked `feature = true` and each document's keyword values (as stable keys, for click and
entity features).

A *unit* is what features are computed over: every search field (its sources joined, as indexed), and
for a field copying several sources (BEIR's `all` = title + text), each source on its own.
Misuse: building a store per query; `TermStore.open(searcher)` builds once per snapshot and caches.
"""
from __future__ import annotations

import json
import os
import shutil
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from souk.analysis.registry import get_analyzer
from souk.errors import IndexStateError
from souk.index.keys import doc_key, doc_keys
from souk.index.store import SOURCE

FORMAT = 2
KEEP_CACHES = 2
_BATCH = 4096  # texts analyzed at once while building (`_joined_terms`)
_UNKNOWN = object()  # a document whose terms were not handed over: analyzed
_OPEN: "weakref.WeakKeyDictionary[object, TermStore]" = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Unit:
    """A text over which features are computed: `sources` (stored fields) analyzed with `analyzer`, joined."""

    name: str
    analyzer: str
    sources: tuple[str, ...]


def feature_units(schema) -> list[Unit]:
    """The units of a schema: each search field, plus each source of a field that copies several."""
    units: list[Unit] = []
    for name in schema.search_fields:
        f = schema.fields[name]
        sources = tuple(s for s in (f.copy_from or [f.name]) if schema.fields[s].stored)
        if not sources:
            continue  # nothing stored to rebuild its terms from
        units.append(Unit(f.name, schema.analyzer_of(f), sources))
        if len(sources) > 1:
            taken = {u.name for u in units} | set(schema.search_fields)
            for src in sources:
                units.append(Unit(src if src not in taken else f"{f.name}.{src}", schema.analyzer_of(f), (src,)))
    return units


@dataclass
class Ragged:
    """Per-document lists laid end to end: row r holds `values[offsets[r]:offsets[r + 1]]`."""

    offsets: np.ndarray  # int64, rows + 1
    values: np.ndarray

    def lengths(self, rows: np.ndarray) -> np.ndarray:
        """List lengths of `rows` (0 for row -1, an unknown document)."""
        ok = rows >= 0
        r = np.where(ok, rows, 0)
        return np.where(ok, self.offsets[r + 1] - self.offsets[r], 0)

    def gather(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The lists of `rows` end to end: (values, index into `rows`, position in its list, lengths),
        all without a loop over rows."""
        lens = self.lengths(rows)
        which = np.repeat(np.arange(len(rows)), lens)
        first = np.cumsum(lens) - lens
        pos = np.arange(int(lens.sum())) - np.repeat(first, lens)
        starts = self.offsets[np.where(rows >= 0, rows, 0)]
        return self.values[np.repeat(starts, lens) + pos], which, pos, lens

    @classmethod
    def of(cls, lists: list[list[int]], dtype) -> "Ragged":
        lens = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
        values = np.fromiter((v for lst in lists for v in lst), dtype=dtype, count=int(lens.sum()))
        return cls.from_lengths(lens, values)

    @classmethod
    def from_lengths(cls, lens: Any, values: np.ndarray) -> "Ragged":
        """Rows of `lens` values each, taken from `values` in order. Misuse: `values` not `sum(lens)` long."""
        return cls(np.concatenate([[0], np.cumsum(lens, dtype=np.int64)]).astype(np.int64), values)


@dataclass
class UnitTerms(Ragged):
    """One unit of every document: `values` are int32 term ids in document order."""

    unit: Unit = Unit("", "standard", ())
    df: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))  # per term id: documents holding it here
    avg_len: float = 0.0


def value_key(field_name: str, value: str) -> int:
    """A stable 63-bit key of a keyword value (`brand=spigen`): the same across commits and processes."""
    return doc_key(f"{field_name}={value}")


class TermStore:
    """Analyzed terms, keyword values and feature numbers of every document at one commit."""

    def __init__(self, ids: list[str], vocab: list[str], units: dict[str, UnitTerms], numbers: dict[str, np.ndarray],
                 keywords: dict[str, Ragged] | None = None, keys: np.ndarray | None = None, commit_id: str = ""):
        self.ids = ids
        self.vocab = vocab
        self.units = units
        self.numbers = numbers
        self.keywords = keywords or {}  # field -> value keys (`value_key`) per document
        self.keys = doc_keys(ids) if keys is None else keys
        self.commit_id = commit_id
        self.user_dict: str | None = None  # the schema's [analysis] user_dict, set by `open`
        self._row = {doc_id: i for i, doc_id in enumerate(ids)}
        self._term = {t: i for i, t in enumerate(vocab)}
        self._vocab_array: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self, ids: Sequence[str]) -> np.ndarray:
        """Row of each id (-1 for an id this commit does not hold)."""
        get = self._row.get
        return np.fromiter((get(i, -1) for i in ids), dtype=np.int64, count=len(ids))

    def term_ids(self, terms: Sequence[str]) -> np.ndarray:
        """Term id of each term (-1 for a term no document holds: it matches nothing)."""
        get = self._term.get
        return np.fromiter((get(t, -1) for t in terms), dtype=np.int64, count=len(terms))

    def parts(self, name: str) -> list[str]:
        """The units that, end to end, make unit `name` (each of its sources is a unit of its own), or []
        when it stands alone."""
        u = self.units[name].unit
        if len(u.sources) < 2:
            return []
        found = [n for src in u.sources for n, v in self.units.items() if v.unit.sources == (src,)
                 and v.unit.analyzer == u.analyzer]
        return found if len(found) == len(u.sources) else []

    def analyze(self, text: str, unit: str | None = None) -> list[str]:
        """A query's terms under `unit`'s analyzer (default: the first unit's), as the store holds them."""
        u = self.units[unit].unit if unit else next(iter(self.units.values())).unit if self.units else None
        return get_analyzer(u.analyzer if u else "standard", self.user_dict).terms(text)

    def terms_of(self, ids: np.ndarray) -> list[str]:
        """The strings of term ids."""
        if self._vocab_array is None:
            self._vocab_array = np.asarray(self.vocab, dtype=object)
        return self._vocab_array[ids].tolist()

    # ---- building and caching ----------------------------------------------------------------
    @classmethod
    def build(cls, searcher, reuse: bool = True) -> "TermStore":
        """The store of the searcher's commit from its stored documents, analyzed (seconds for ~50k product
        titles) except where the writer of this commit handed their terms over in this process (`reuse`,
        `souk.index.handover`): the same store either way."""
        from souk.index.handover import kept_keywords, take

        schema = searcher.schema
        user_dict = schema.analysis.get("user_dict")
        units = feature_units(schema)
        kw_fields = kept_keywords(schema)
        handed = take(searcher.path, searcher.commit_id, user_dict) if reuse else None
        if handed is not None and not ({(u.analyzer, s) for u in units for s in u.sources} <= set(handed.specs)
                                       and set(kw_fields) <= set(handed.keywords)):
            handed = None  # (written with another schema)
        sources: list[dict] | None = None  # the stored documents, read unless every one was handed over
        where: list[int] | None = None  # each document's place in `handed` (-1: not handed over)
        if handed is not None:
            keys = searcher.live_keys()
            where = handed.positions(keys)
            if min(where, default=0) >= 0:
                handed_ids = handed.ids()
                ids = [handed_ids[p] for p in where]
            else:
                where = None
        if where is None:
            keys, blobs = searcher.stored_bytes(SOURCE)
            sources = [json.loads(b) if b else {} for b in blobs]
            ids = [str(s.get(schema.id_field, "")) for s in sources]
            where = handed.positions(keys) if handed is not None else None
        vocab: dict[str, int] = {}
        analyzed: dict[tuple[str, str], Ragged] = {}  # (analyzer, source field) -> term ids per document
        for u in units:
            for src in u.sources:
                if (u.analyzer, src) not in analyzed:
                    given = handed.column((u.analyzer, src)) if handed is not None else None
                    known = [given[p] if p >= 0 else _UNKNOWN for p in where or ()] if given is not None else None
                    joined = _joined_terms(get_analyzer(u.analyzer, user_dict), src, sources or [], known)
                    analyzed[(u.analyzer, src)] = _term_ids(joined, vocab)
        built: dict[str, UnitTerms] = {}
        for u in units:
            ragged = _joined([analyzed[(u.analyzer, src)] for src in u.sources])
            lens = np.diff(ragged.offsets)
            if not lens.sum():
                continue  # empty everywhere (HomeDepot's `text`): no features from it
            parent = built.get(next((p.name for p in units if p.sources != u.sources
                                     and set(u.sources) < set(p.sources)), ""))
            if (
                parent is not None
                and np.array_equal(parent.values, ragged.values)
                and np.array_equal(parent.offsets, ragged.offsets)
            ):
                continue  # the only non-empty source of its field (HomeDepot's `title` in `all`): a duplicate
            built[u.name] = UnitTerms(ragged.offsets, ragged.values, u, _doc_freq(ragged.values, lens, len(vocab)),
                                      float(lens.mean()))
        keywords = {}
        for name in kw_fields:
            given = handed.keyword(name) if sources is None and handed is not None else None
            column = [s.get(name) for s in sources or ()] if given is None else [given[p] for p in where or ()]
            lists = [[value_key(name, v) for v in ([vals] if isinstance(vals, str) else vals or [])] for vals in column]
            keywords[name] = Ragged.of(lists, np.int64)
        numbers = {f.name: np.asarray(searcher.numbers(ids, f.name), dtype=np.float64)
                   for f in schema.of_kind("number") if f.feature} if ids else {}
        return cls(ids, list(vocab), built, numbers, keywords, np.asarray(keys, dtype=np.int64), searcher.commit_id)

    @classmethod
    def open(cls, searcher) -> "TermStore":
        """The store of the searcher's commit: in memory, else from the disk cache, else built and cached."""
        store = _OPEN.get(searcher)
        if store is not None:
            return store
        root = Path(searcher.path) / "cache"
        final = root / f"terms-{searcher.commit_id}"
        layout = {"units": [{"name": u.name, "analyzer": u.analyzer, "sources": list(u.sources)}
                            for u in feature_units(searcher.schema)],
                  "numbers": [f.name for f in searcher.schema.of_kind("number") if f.feature],
                  "keywords": [f.name for f in searcher.schema.of_kind("keyword") if f.stored]}
        if (final / "meta.json").is_file() and not final.is_symlink():
            try:
                meta = json.loads((final / "meta.json").read_text())
                store = cls.load(final) if meta.get("layout") == layout else None
            except Exception:  # a damaged cache is rebuilt, never trusted
                store = None
        if store is None:
            store = cls.build(searcher)
            tmp = root / f".tmp-terms-{searcher.commit_id}-{os.getpid()}"
            try:
                shutil.rmtree(tmp, ignore_errors=True)
                store.save(tmp, {"layout": layout})
                shutil.rmtree(final, ignore_errors=True)
                os.replace(tmp, final)
                _prune(root)
            except OSError:  # a read-only index, or another process cached the same commit first
                shutil.rmtree(tmp, ignore_errors=True)
        store.user_dict = searcher.schema.analysis.get("user_dict")
        _OPEN[searcher] = store
        return store

    def save(self, folder: Path, extra: dict | None = None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = {"keys": self.keys}  # Any: savez's own keywords are not arrays
        for i, u in enumerate(self.units.values()):
            arrays.update({f"off{i}": u.offsets, f"tok{i}": u.values, f"df{i}": u.df})
        for name, values in self.numbers.items():
            arrays[f"num:{name}"] = values
        for name, ragged in self.keywords.items():
            arrays.update({f"kwoff:{name}": ragged.offsets, f"kw:{name}": ragged.values})
        np.savez(folder / "store.npz", **arrays)
        (folder / "ids.json").write_text(json.dumps(self.ids, ensure_ascii=False), encoding="utf-8")
        (folder / "vocab.txt").write_text("\n".join(self.vocab), encoding="utf-8")
        meta = {"format": FORMAT, "commit_id": self.commit_id, "docs": len(self.ids),
                "stored_units": [{"name": u.unit.name, "analyzer": u.unit.analyzer, "sources": list(u.unit.sources),
                                  "avg_len": u.avg_len} for u in self.units.values()], **(extra or {})}
        (folder / "meta.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, folder: Path) -> "TermStore":
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("format") != FORMAT:
            raise IndexStateError(f"{folder}: term store format {meta.get('format')} is not {FORMAT}")
        data = np.load(folder / "store.npz")
        text = (folder / "vocab.txt").read_text(encoding="utf-8")
        units = {}
        for i, u in enumerate(meta["stored_units"]):
            unit = Unit(u["name"], u["analyzer"], tuple(u["sources"]))
            units[unit.name] = UnitTerms(data[f"off{i}"], data[f"tok{i}"], unit, data[f"df{i}"], float(u["avg_len"]))
        numbers = {k[4:]: data[k] for k in data.files if k.startswith("num:")}
        keywords = {k[3:]: Ragged(data[f"kwoff:{k[3:]}"], data[k]) for k in data.files if k.startswith("kw:")}
        ids = json.loads((folder / "ids.json").read_text(encoding="utf-8"))
        return cls(ids, text.split("\n") if text else [], units, numbers, keywords, data["keys"],
                   meta.get("commit_id", ""))


def is_open(searcher) -> bool:
    """True when the term store of the searcher's snapshot is already in memory."""
    return searcher in _OPEN


def _joined_terms(analyzer, src: str, sources: list[dict], known: list | None) -> list[str | None]:
    """The space-joined terms of field `src` of each document (None: no terms): `known` where it holds them (the
    writer's, handed over), else analyzed from the stored text as the writer analyzes (`joined_terms`, batches of
    `_BATCH` texts)."""
    from souk.analysis.batch import joined_terms

    out: list = known if known is not None else [_UNKNOWN] * len(sources)
    todo: Sequence[int] = [i for i, t in enumerate(out) if t is _UNKNOWN] if known is not None else range(len(sources))
    texts = [v if isinstance(v := sources[i].get(src), str) and v else None for i in todo]
    for start in range(0, len(texts), _BATCH):
        for i, joined in zip(todo[start:start + _BATCH], joined_terms(analyzer, texts[start:start + _BATCH])):
            out[i] = joined
    return out


def _term_ids(joined_texts: list[str | None], vocab: dict[str, int]) -> Ragged:
    """Each text's terms (space-joined, as `joined_terms` gives them; None: no terms) as ids of `vocab`, new terms
    added in order of first appearance, with one dictionary read per term (per text and per term in Python,
    scifact's store took 2.4 CPU s)."""
    lens: list[int] = []
    words: list[str] = []
    for joined in joined_texts:
        found = joined.split(" ") if joined else []  # (terms hold no space: the writer's tokenizer splits there)
        lens.append(len(found))
        words.extend(found)
    for w in dict.fromkeys(words):  # (first appearances, in order)
        if w not in vocab:
            vocab[w] = len(vocab)
    values = np.fromiter(map(vocab.__getitem__, words), dtype=np.int32, count=len(words))
    return Ragged.from_lengths(lens, values)


def _joined(parts: list[Ragged]) -> Ragged:
    """Per document, the lists of `parts` (same documents) end to end."""
    if len(parts) == 1:
        return parts[0]
    lens = [np.diff(p.offsets) for p in parts]
    values = np.empty(sum(len(p.values) for p in parts), dtype=parts[0].values.dtype)
    joined = Ragged.from_lengths(np.sum(lens, axis=0), values)
    before = joined.offsets[:-1].copy()  # where each document's next part starts
    for p, n in zip(parts, lens):
        pos = np.arange(len(p.values)) - np.repeat(p.offsets[:-1], n)  # position inside the document's list
        values[np.repeat(before, n) + pos] = p.values
        before += n
    return joined


def _doc_freq(tokens: np.ndarray, lens: np.ndarray, vocab_size: int) -> np.ndarray:
    """Documents holding each term (a term repeated in one document counts once)."""
    doc = np.repeat(np.arange(len(lens), dtype=np.int64), lens)
    pairs = np.sort(doc * vocab_size + tokens.astype(np.int64))  # (a sort and a diff: np.unique hashed, 4x slower)
    first = np.ones(len(pairs), dtype=bool)
    np.not_equal(pairs[1:], pairs[:-1], out=first[1:])
    return np.bincount((pairs[first] % vocab_size).astype(np.int64), minlength=vocab_size).astype(np.int32)


def _prune(root: Path) -> None:
    dirs = sorted((p for p in root.glob("terms-*") if p.is_dir() and not p.is_symlink()),
                  key=lambda p: p.stat().st_mtime, reverse=True)
    for old in dirs[KEEP_CACHES:]:
        shutil.rmtree(old, ignore_errors=True)
