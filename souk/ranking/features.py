"""Ranking features by name: what a learned stage knows about each (query, candidate) pair.

Features come in groups (`FEATURE_GROUPS`, added with `@register_features(name, version, columns)`); a group computes
all its columns for every candidate of one query at once, with array operations (a loop per field or
per query term is fine, never one per candidate). Columns are named `group.part...`:

| group    | columns (per unit `U`: each search field, and each source of a field copying several)          |
|----------|-------------------------------------------------------------------------------------------------|
| `text`   | `text.U.bm25`, `.bm25_rank`, `.cover` (share of query terms present), `.idf_cover`, `.dcover`    |
|          | (share of the unit's terms that are query terms), `.last` (holds the query's last term, often   |
|          | its head noun), `.bigram` (share of query bigrams present in order), `.phrase` (whole query     |
|          | present), `.span` (shortest window holding every present query term / their count), `.first`   |
|          | (first match position), `.equals` (the unit is exactly the query), `.len` (terms); short units  |
|          | (titles) also `.fuzzy`: query terms present exactly or misspelt (rapidfuzz ratio >= 80)         |
| `signal` | `signal.recall`, `signal.bm25`, `signal.dense` and their `_rank`s: earlier stages' scores        |
|          | (NaN where a retriever never saw the document)                                                   |
| `learned`| `signal.wordvec`, `signal.interact` and their `_rank`s (only when those models are fitted)       |
| `number` | `number.F.log` (signed log1p), `number.F.rank` (within the candidates) of number fields marked   |
|          | `feature = true`                                                                                 |
| `query`  | `query.terms`, `query.chars`                                                                     |
| `clicks` | `clicks`: the online click model's logit (only when the index has an active `clicks` model)     |

Query-plan features (entity agreement, predicted category) plug in the same way: register a group whose
`compute` reads `batch.plan`. A model records its `FeatureSet.spec` (groups, versions, column names in
order) and `FeatureSet.check` refuses to score with another one. Misuse: changing what a column computes
without bumping its group's version (old models would silently score garbage).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence, cast

import numpy as np

from souk.analysis.syntax import may_have_operators, parse_query
from souk.errors import ModelError
from souk.index.terms import TermStore, UnitTerms
from souk.plugins import Registry
from souk.query.plan import QueryPlan
from souk.types import Ranking

if TYPE_CHECKING:
    from souk.index.searcher import Searcher

SPEC_FORMAT = 1
K1, B = 1.2, 0.75  # tantivy's BM25


@dataclass
class FeatureEnv:
    """What feature groups may read, built once per snapshot: the searcher, its term store, and the
    index's other fitted models that serve as features (e.g. `clicks`)."""

    searcher: Searcher
    terms: TermStore
    models: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def open(cls, searcher, models: dict[str, Any] | None = None) -> "FeatureEnv":
        return cls(searcher, TermStore.open(searcher), dict(models or {}))


@dataclass
class Batch:
    """The candidates of one query as feature groups see them; `cache` shares work between groups."""

    plan: QueryPlan
    ranking: Ranking
    rows: np.ndarray  # term-store row of each candidate (-1: unknown to this snapshot)
    text: str         # the words features match: the plan's text without -excluded words or operators
    cache: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rows)


Compute = Callable[[FeatureEnv, Batch], np.ndarray]


@dataclass(frozen=True)
class FeatureGroup:
    name: str
    version: int
    columns: Callable[[FeatureEnv], list[str]]
    compute: Compute
    applies: Callable[[FeatureEnv], bool]


FEATURE_GROUPS: Registry[FeatureGroup] = Registry("feature_group")  # in registration order: the default columns


def register_features(name: str, version: int, columns: Callable[[FeatureEnv], list[str]],
                      applies: Callable[[FeatureEnv], bool] = lambda env: True) -> Callable[[Compute], Compute]:
    """Decorator: register a group whose `compute(env, batch)` returns an array (candidates, len(columns))
    in `FEATURE_GROUPS`."""

    def deco(compute: Compute) -> Compute:
        FEATURE_GROUPS.register(name, FeatureGroup(name, version, columns, compute, applies))
        return compute

    return deco


def feature_groups() -> list[str]:
    return [name for name, _ in FEATURE_GROUPS.in_order()]


def default_groups(env: FeatureEnv) -> list[str]:
    """The groups that apply to this index (e.g. `clicks` only when a click model is active)."""
    return [g.name for _, g in FEATURE_GROUPS.in_order() if g.applies(env)]


class FeatureSet:
    """Named groups over one environment: the exact columns, in order, a model is trained and scored with."""

    def __init__(self, env: FeatureEnv, groups: Sequence[str]):
        unknown = [g for g in groups if g not in FEATURE_GROUPS]
        if unknown:
            raise ModelError(f"unknown feature group {unknown[0]!r}; known: {', '.join(feature_groups())}")
        self.env = env
        self.groups = [FEATURE_GROUPS.get(g) for g in groups]
        self.columns = [c for g in self.groups for c in g.columns(env)]

    @property
    def spec(self) -> dict[str, Any]:
        """What a model records: format, groups with versions, and the column names in order."""
        return {"format": SPEC_FORMAT, "groups": {g.name: g.version for g in self.groups}, "names": list(self.columns)}

    def check(self, spec: dict[str, Any], model: str = "the model") -> None:
        """Refuse to score a model trained on other features (ModelError says what differs)."""
        mine = self.spec
        if spec.get("format") != mine["format"] or spec.get("groups") != mine["groups"]:
            raise ModelError(f"{model} was trained with feature groups {spec.get('groups')} (format "
                             f"{spec.get('format')}); "
                             f"this souk computes {mine['groups']} (format {mine['format']}): refit it with "
                             "souk fit --stages ltr")
        if spec.get("names") != mine["names"]:
            theirs, ours = list(spec.get("names") or []), mine["names"]
            i = next((i for i, (a, b) in enumerate(zip(theirs, ours)) if a != b), min(len(theirs), len(ours)))
            a = theirs[i] if i < len(theirs) else "(none)"
            b = ours[i] if i < len(ours) else "(none)"
            raise ModelError(f"{model} was trained with {len(theirs)} features, this index gives {len(ours)}; "
                             f"column {i} is {a!r} there and {b!r} here: refit it with souk fit --stages ltr")

    def batch(self, plan: QueryPlan, ranking: Ranking) -> Batch:
        return Batch(plan, ranking, self.env.terms.rows(ranking.ids), feature_text(plan))

    def matrix(self, plan: QueryPlan, ranking: Ranking) -> np.ndarray:
        """Features of every candidate, shape (len(ranking), len(columns)), float32, NaN for missing."""
        b = self.batch(plan, ranking)
        if not len(b):
            return np.zeros((0, len(self.columns)), dtype=np.float32)
        parts = [np.asarray(g.compute(self.env, b), dtype=np.float32).reshape(len(b), -1) for g in self.groups]
        return np.concatenate(parts, axis=1) if parts else np.zeros((len(b), 0), dtype=np.float32)


def feature_text(plan: QueryPlan) -> str:
    """The words a document should contain: free words, phrases and required words (not -excluded)."""
    text = plan.text
    if not may_have_operators(text):
        return text
    p = parse_query(text)
    return " ".join([p.free, *p.phrases, *p.required])


def rank_desc(values: np.ndarray) -> np.ndarray:
    """1 for the highest value, ties share the best rank; NaN stays NaN."""
    out = np.full(len(values), np.nan, dtype=np.float32)
    ok = ~np.isnan(values)
    if ok.any():
        v = -np.asarray(values[ok], dtype=np.float64)
        out[ok] = np.searchsorted(np.sort(v), v, side="left") + 1
    return out


# ---- text ----------------------------------------------------------------------------------
TEXT_FEATURES = ("bm25", "bm25_rank", "cover", "idf_cover", "dcover", "last", "bigram", "phrase", "span", "first",
                 "equals", "len")
FUZZY_MAX_AVG_LEN = 32  # units this short on average (titles) also get `fuzzy`: misspelt query words
FUZZY_MIN_CHARS, FUZZY_MIN_RATIO = 4, 80.0


COMPOSITE_FEATURES = ("bm25", "bm25_rank", "cover", "idf_cover", "len")


def unit_columns(unit: UnitTerms, composite: bool = False) -> list[str]:
    """A unit's text features; a composite unit (its sources are units too: BEIR's `all` = title + text)
    gets only those its parts' term counts give, without a pass over its terms."""
    if composite:
        return list(COMPOSITE_FEATURES)
    return list(TEXT_FEATURES) + (["fuzzy"] if unit.avg_len <= FUZZY_MAX_AVG_LEN else [])


def _text_columns(env: FeatureEnv) -> list[str]:
    return [f"text.{name}.{f}" for name, u in env.terms.units.items()
            for f in unit_columns(u, bool(env.terms.parts(name)))]


def query_term_ids(env: FeatureEnv, batch: Batch, unit: UnitTerms) -> tuple[np.ndarray, list[str]]:
    """The query's terms under `unit`'s analyzer, in order, as term ids and strings; unknown terms get
    distinct negative ids (they match nothing but count as asked for)."""
    key = f"terms:{unit.unit.analyzer}"
    found = batch.cache.get(key)
    if found is None:
        terms = env.terms.analyze(batch.text, unit.unit.name)
        ids = env.terms.term_ids(terms)
        unknown = ids < 0
        ids[unknown] = -1 - np.arange(int(unknown.sum()))
        found = batch.cache[key] = (ids, terms)
    return found


def unit_features(unit: UnitTerms, rows: np.ndarray, seq: np.ndarray, n_docs: int,
                  strings: list[str] | None = None, vocab: Any = None) -> dict[str, np.ndarray]:
    """`unit_columns` of one unit for candidate `rows` and query term ids `seq` (in query order); with the
    query term `strings` and the store (`vocab`) also `fuzzy`."""
    n = len(rows)
    nan = np.full(n, np.nan)
    flat, which, pos, lens = unit.gather(rows)
    out: dict[str, np.ndarray] = {f: nan for f in unit_columns(unit)}
    out["len"] = lens.astype(np.float64)
    if not len(seq):
        return out
    uniq, inv = np.unique(seq, return_inverse=True)  # sorted; negative ids are unknown terms
    m, L = len(uniq), len(seq)
    # every occurrence of a query term, in document order: (index into flat, query term), through a
    # term id -> query term table (one gather over the candidates' terms, no search)
    known = np.flatnonzero(uniq >= 0)
    lut = _lookup(len(unit.df))
    lut[uniq[known]] = known
    j = lut[flat]
    lut[uniq[known]] = -1
    hit = np.flatnonzero(j >= 0)
    hj, hdoc, hpos = j[hit].astype(np.int64), which[hit], pos[hit]
    tf = np.bincount(hdoc * m + hj, minlength=n * m).reshape(n, m).astype(np.float64)
    _counts(out, unit, uniq, tf, lens, n_docs)
    out["tf"] = tf
    present = tf > 0
    npresent = present.sum(axis=1)
    out["dcover"] = np.bincount(hdoc, minlength=n) / np.maximum(lens, 1)
    out["last"] = present[:, inv[-1]].astype(np.float64)
    first = np.full(n, np.nan)
    if len(hit):
        docs, at = np.unique(hdoc, return_index=True)
        first[docs] = hpos[at]
    out["first"] = first
    # query terms in order at consecutive positions of one document: bigrams, phrase, equality
    if L > 1:
        code = inv[:-1] * m + inv[1:]  # the query's bigrams as (term, next term) codes
        nxt = np.flatnonzero((hit[1:] == hit[:-1] + 1) & (hdoc[1:] == hdoc[:-1]))
        pairs = nxt[np.isin(hj[nxt] * m + hj[nxt + 1], code)]
        found = np.unique(hdoc[pairs] * (m * m) + (hj[pairs] * m + hj[pairs + 1]))
        out["bigram"] = np.bincount(found // (m * m), minlength=n) / len(np.unique(code))
    run = hj == inv[0]  # hits that start the whole query sequence
    for k in range(1, L):
        idx = np.flatnonzero(run)
        idx = idx[idx + k < len(hit)]
        ok = (hit[idx + k] == hit[idx] + k) & (hdoc[idx + k] == hdoc[idx]) & (hj[idx + k] == inv[k])
        run = np.zeros(len(hit), dtype=bool)
        run[idx[ok]] = True
    phrase, equals = np.zeros(n), np.zeros(n)
    phrase[hdoc[run]] = 1.0
    equals[hdoc[run & (hpos == 0)]] = 1.0
    if L > 1:
        out["phrase"] = phrase
    out["equals"] = equals * (lens == L)
    out["span"] = _span(hj, hdoc, hpos, present, npresent, m, n)
    if "fuzzy" in out and strings is not None and vocab is not None:
        out["fuzzy"] = _fuzzy_cover(flat, which, present, uniq, inv, strings, vocab, n)
    return out


def _counts(out: dict[str, np.ndarray], unit: UnitTerms, uniq: np.ndarray, tf: np.ndarray, lens: np.ndarray,
            n_docs: int) -> None:
    """The features of term counts alone: BM25 (tantivy's k1, b, idf), its rank, and coverage."""
    df = np.where(uniq >= 0, unit.df[np.maximum(uniq, 0)], 0)
    idf = np.log1p((n_docs - df + 0.5) / (df + 0.5))
    norm = K1 * (1.0 - B + B * lens / max(unit.avg_len, 1e-9))
    out["bm25"] = (idf * tf * (K1 + 1.0) / (tf + norm[:, None])).sum(axis=1)
    out["bm25_rank"] = rank_desc(out["bm25"])
    present = tf > 0
    out["cover"] = present.sum(axis=1) / len(uniq)
    out["idf_cover"] = (present * idf).sum(axis=1) / idf.sum()
    out["len"] = lens.astype(np.float64)


_SCRATCH = threading.local()


def _lookup(size: int) -> np.ndarray:
    """A per-thread table of `size` entries, all -1; callers set entries and reset them before returning."""
    lut = getattr(_SCRATCH, "lut", None)
    if lut is None or len(lut) < size:
        lut = _SCRATCH.lut = np.full(max(size, 1024), -1, dtype=np.int32)
    return lut


def _fuzzy_cover(flat: np.ndarray, which: np.ndarray, present: np.ndarray, uniq: np.ndarray, inv: np.ndarray,
                 strings: list[str], vocab: Any, n: int) -> np.ndarray:
    """Share of query terms a document holds exactly or as a near spelling (ratio >= 80, words of 4+
    characters): `bracet` finds `bracket`. One similarity matrix between the query's terms and the
    candidates' distinct terms."""
    from rapidfuzz import fuzz, process

    covered = present.copy()
    by_uniq: dict[int, str] = {}
    for k, t in enumerate(strings):
        by_uniq.setdefault(int(inv[k]), t)
    todo = [(jj, t) for jj, t in sorted(by_uniq.items()) if len(t) >= FUZZY_MIN_CHARS]
    doc_terms = np.unique(flat)
    if todo and len(doc_terms):
        names = vocab.terms_of(doc_terms)
        sim = process.cdist([t for _, t in todo], names, scorer=fuzz.ratio, score_cutoff=FUZZY_MIN_RATIO, workers=1)
        near = sim >= FUZZY_MIN_RATIO  # (query terms, distinct candidate terms)
        at = np.searchsorted(doc_terms, flat)
        for row, (jj, _) in enumerate(todo):
            if near[row].any():
                covered[np.unique(which[near[row][at]]), jj] = True
    return covered.sum(axis=1) / len(uniq)


def _span(hj: np.ndarray, hdoc: np.ndarray, hpos: np.ndarray, present: np.ndarray, npresent: np.ndarray,
          m: int, n: int) -> np.ndarray:
    """Shortest window holding every query term a document has, divided by how many it has (1 = adjacent);
    NaN with fewer than two. Works on the hits only: for each hit, the last hit of every term so far."""
    span = np.full(n, np.nan)
    if not len(hj) or npresent.max() < 2:
        return span
    h = len(hj)
    idx = np.arange(h)
    last = np.full((h, m), -1, dtype=np.int64)
    for t in range(m):  # one pass per query term
        last[:, t] = np.maximum.accumulate(np.where(hj == t, idx, -1))
    starts = np.flatnonzero(np.r_[True, hdoc[1:] != hdoc[:-1]])  # hits are grouped by document
    start_of_doc = np.repeat(starts, np.diff(np.r_[starts, h]))
    needed = present[hdoc]
    valid = np.all((last >= start_of_doc[:, None]) | ~needed, axis=1)
    lo = np.where(needed, last, h).min(axis=1)
    width = hpos - hpos[np.minimum(lo, h - 1)] + 1
    best = np.full(n, np.inf)
    np.minimum.at(best, hdoc[valid], width[valid])
    ok = (npresent >= 2) & np.isfinite(best)
    span[ok] = best[ok] / npresent[ok]
    return span


def _sum(arrays: list[np.ndarray]) -> np.ndarray:
    """Element-wise sum of one or more arrays (as the builtin `sum` adds them, typed)."""
    return cast(np.ndarray, sum(arrays))


@register_features("text", version=1, columns=_text_columns)
def _text(env: FeatureEnv, batch: Batch) -> np.ndarray:
    n_docs = len(env.terms)
    found: dict[str, dict[str, np.ndarray]] = {}
    composite = {name: env.terms.parts(name) for name in env.terms.units}
    for name, u in env.terms.units.items():
        if not composite[name]:
            seq, strings = query_term_ids(env, batch, u)
            found[name] = unit_features(u, batch.rows, seq, n_docs, strings, env.terms)
    for name, parts in composite.items():
        if parts:  # term counts of the parts add up (they share the analyzer, so the query's terms)
            u = env.terms.units[name]
            seq, _ = query_term_ids(env, batch, u)
            out = found[name] = {}
            if len(seq) and all("tf" in found[p] for p in parts):
                _counts(out, u, np.unique(seq), _sum([found[p]["tf"] for p in parts]),
                        _sum([found[p]["len"] for p in parts]), n_docs)
            else:
                out.update({c: np.full(len(batch), np.nan) for c in COMPOSITE_FEATURES},
                           len=_sum([found[p]["len"] for p in parts]))
    cols = [found[name][c] for name, u in env.terms.units.items() for c in unit_columns(u, bool(composite[name]))]
    return np.stack(cols, axis=1) if cols else np.zeros((len(batch), 0))


# ---- earlier stages' signals -----------------------------------------------------------------
SIGNALS = ("recall", "bm25", "dense")


@register_features("signal", version=1, columns=lambda env: [f"signal.{s}{r}" for s in SIGNALS for r in ("", "_rank")])
def _signals(env: FeatureEnv, batch: Batch) -> np.ndarray:
    return _signal_columns(batch, SIGNALS)


def _signal_columns(batch: Batch, names: Sequence[str]) -> np.ndarray:
    """Each named signal of the candidates and its rank (NaN where the stage never scored the document)."""
    cols = []
    for name in names:
        values = np.asarray(batch.ranking.signal(name), dtype=np.float64)
        cols += [values, rank_desc(values)]
    return np.stack(cols, axis=1)


# ---- fitted stages' signals (Chinese indexes: word vectors in recall, the interaction model before ltr) ----
LEARNED_SIGNALS = ("wordvec", "interact")


def _fitted(env: FeatureEnv) -> bool:
    from souk.models.store import resolve

    return any(resolve(env.searcher.path, name) is not None for name in LEARNED_SIGNALS)


@register_features("learned", version=1,
                   columns=lambda env: [f"signal.{s}{r}" for s in LEARNED_SIGNALS for r in ("", "_rank")],
                   applies=_fitted)
def _learned(env: FeatureEnv, batch: Batch) -> np.ndarray:
    return _signal_columns(batch, LEARNED_SIGNALS)


# ---- number fields marked as features --------------------------------------------------------
@register_features("number", version=1,
                   columns=lambda env: [f"number.{f}.{t}" for f in env.terms.numbers for t in ("log", "rank")],
                   applies=lambda env: bool(env.terms.numbers))
def _numbers(env: FeatureEnv, batch: Batch) -> np.ndarray:
    cols = []
    ok = batch.rows >= 0
    for values in env.terms.numbers.values():
        x = np.where(ok, values[np.maximum(batch.rows, 0)], np.nan)
        cols += [np.sign(x) * np.log1p(np.abs(x)), rank_desc(x)]
    return np.stack(cols, axis=1) if cols else np.zeros((len(batch), 0))


# ---- the query itself ------------------------------------------------------------------------
@register_features("query", version=1, columns=lambda env: ["query.terms", "query.chars"])
def _query(env: FeatureEnv, batch: Batch) -> np.ndarray:
    units = list(env.terms.units.values())
    terms = len(query_term_ids(env, batch, units[0])[0]) if units else 0
    return np.tile([terms, len(batch.text.strip())], (len(batch), 1))


# ---- the online click model ------------------------------------------------------------------
@register_features("clicks", version=1, columns=lambda env: ["clicks"], applies=lambda env: "clicks" in env.models)
def _clicks(env: FeatureEnv, batch: Batch) -> np.ndarray:
    model = env.models.get("clicks")
    if model is None:
        raise ModelError("feature `clicks` needs the index's click model; learn one with souk clicks learn")
    return model.score(env.terms, batch.plan, batch.text, batch.rows)[:, None]
