"""Impacts: each search field's postings with their BM25 scores computed once per commit, so that a plain
"any word" BM25 query is a few array slices and one scatter-add instead of a tantivy query.

Built from the term store (`souk.index.terms`: every document's analyzed terms per search field, as indexed),
scored exactly as tantivy scores them: k1 = 1.2, b = 0.75, idf = ln(1 + (N - df + 0.5) / (df + 0.5)), document
lengths through tantivy's one-byte field norms (`FIELD_NORMS`), f32 weights. Per query: the query's terms
(duplicates count twice, as they do in tantivy's boolean query), each field's boost, summed per document;
ties broken by document order, as tantivy breaks them. Statistics are those of the live documents (tantivy
counts deleted documents until a merge, so scores can differ slightly after deletes).

Misuse: using it for queries with filters, boosts, expansions, operators or matching tiers; `Searcher.bm25`
takes this path only for plain queries and asks tantivy otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from souk.limits import MAX_IMPACT_TOKENS, MAX_IMPACT_VIEWS

K1, B = 1.2, 0.75
FLOOR_K = 100  # per term, its FLOOR_K-th best score: a floor under a query's k-th best total, for k <= FLOOR_K
DENSE = 8  # a query with more than 1/DENSE postings per document sums them over every document (`_dense_sum`)
_ALTERNATE = np.resize(np.array([1.0, 0.0]), 255)  # weights of term spans and the empty columns between them


def _compiled_scatter() -> Any:
    """scipy's compiled Y += A x of a CSC matrix (a private module of the pinned scipy; importing scipy.sparse
    takes ~0.3-0.8 s, so only where impacts are built), or None: the sums then use `bincount`."""
    try:
        from scipy.sparse._sparsetools import csc_matvec

        # checked once on spans given latest first, as `_dense_sum` gives them (another scipy may differ)
        total = np.zeros(3)
        csc_matvec(3, 3, np.array([2, 3, 0, 2], dtype=np.intp), np.array([0, 2, 1], dtype=np.intp),
                   np.array([1.0, 2.0, 4.0]), _ALTERNATE[:3], total)
        if total.tolist() != [1.0, 4.0, 2.0]:
            return None
    except Exception:  # pragma: no cover  (ImportError, or a changed signature)
        return None
    return csc_matvec


def _field_norms() -> np.ndarray:
    """tantivy's 256 decoded field norms (`fieldnorm/code.rs`): 0..40 exactly, then buckets of 8 whose step doubles."""
    table, value, step = list(range(41)), 40, 2
    while len(table) < 256:
        for _ in range(min(8, 256 - len(table))):
            value += step
            table.append(value)
        step *= 2
    return np.asarray(table, dtype=np.int64)


FIELD_NORMS = _field_norms()


@dataclass
class FieldImpacts:
    """One field: term id t's postings are `rows[starts[t]:starts[t + 1]]` (document rows, ascending) with their
    boosted scores at the same positions of `scores` (f32 values held as f64: the sums take them without a
    conversion per query)."""

    starts: list[int]  # vocabulary size + 1 (Python ints: slicing with them is quicker than with numpy scalars)
    rows: np.ndarray  # intp (the index type numpy's scatter and gather take without a copy)
    scores: np.ndarray  # float64 holding f32 values
    floors: list[float]  # per term id, its FLOOR_K-th best score (0.0 below FLOOR_K documents, or boost <= 0)
    # term -> `View` of the terms queries asked for: one dictionary read per query term (at most MAX_IMPACT_VIEWS of
    # them: then forgotten all at once, which a dictionary read racing it in another thread survives, and asked for
    # again)
    views: dict[str, "View"] = field(default_factory=dict)

    def view(self, term: str, term_index: dict[str, int]) -> "View | None":
        """The postings of `term` (None when this field holds it nowhere), remembered in `views`."""
        tid = term_index.get(term)
        if tid is None or self.starts[tid] == self.starts[tid + 1]:
            return None
        a, b = self.starts[tid], self.starts[tid + 1]
        if len(self.views) >= MAX_IMPACT_VIEWS:
            self.views.clear()
        out = self.views[term] = (self.rows[a:b], self.scores[a:b], self.floors[tid], a, b)
        return out

    @classmethod
    def of(cls, offsets: np.ndarray, tokens: np.ndarray, vocab_size: int, boost: float) -> "FieldImpacts":
        """From one field's term ids per document (`Ragged` layout: offsets, flat term ids)."""
        n = len(offsets) - 1
        lens = np.diff(offsets)
        doc = np.repeat(np.arange(n, dtype=np.int64), lens)
        pairs, tf = np.unique(tokens.astype(np.int64) * max(n, 1) + doc, return_counts=True)
        term, row = pairs // max(n, 1), pairs % max(n, 1)
        df = np.bincount(term, minlength=vocab_size)
        starts = np.concatenate([[0], np.cumsum(df)]).astype(np.int64)
        total = max(n, 1)
        avg = np.float32(lens.sum()) / np.float32(total) if lens.sum() else np.float32(1.0)
        norm_id = np.searchsorted(FIELD_NORMS, lens, side="right") - 1
        norms = FIELD_NORMS.astype(np.float32)
        cache = (np.float32(K1) * (np.float32(1 - B) + np.float32(B) * norms / avg)).astype(np.float32)
        dff = df[term].astype(np.float32)
        idf = np.log1p((np.float32(total) - dff + np.float32(0.5)) / (dff + np.float32(0.5))).astype(np.float32)
        weight = (idf * np.float32(1 + K1)).astype(np.float32)
        tff = tf.astype(np.float32)
        scores = (weight * (tff / (tff + cache[norm_id[row]]))).astype(np.float32)
        if boost != 1.0:
            scores = (scores * np.float32(boost)).astype(np.float32)
        floors = np.zeros(vocab_size, dtype=np.float32)
        if boost > 0:  # (scores are then positive: a document's total is at least any one of its terms' scores)
            for t in (df >= FLOOR_K).nonzero()[0].tolist():
                seg = scores[starts[t]:starts[t + 1]]
                floors[t] = np.partition(seg, len(seg) - FLOOR_K)[len(seg) - FLOOR_K]
        return cls(starts.tolist(), row.astype(np.intp), scores.astype(np.float64), floors.tolist())


# (rows, scores, floor, start, end): a term's postings in one field (`FieldImpacts.view`)
View = tuple[np.ndarray, np.ndarray, float, int, int]


def _postings(picked: list[tuple[FieldImpacts, list[View]]]) -> tuple[np.ndarray, np.ndarray]:
    """The rows and scores of every picked term's postings, concatenated (duplicated terms twice)."""
    views = [v for _, found in picked for v in found]
    return np.concatenate([v[0] for v in views]), np.concatenate([v[1] for v in views])


class Impacts:
    """The impacts of every search field of one commit (built from its term store)."""

    def __init__(self, fields: dict[str, FieldImpacts], term_index: dict[str, int], ids: Sequence[str]):
        self.fields = fields
        self._term = term_index
        self._ids = np.asarray(ids, dtype=object)
        self.num_docs = len(ids)
        self._buffers: list[tuple[np.ndarray, np.ndarray]] = []  # sparse sums' buffers (see `_sparse_sum`)
        self._scatter = _compiled_scatter()

    @classmethod
    def of(cls, store, schema, plan: Sequence[tuple[str, object, float]]) -> "Impacts | None":
        """From a `TermStore` of `schema` for the search fields in `plan` ((field, analyzer, boost) each), or None
        when the store cannot rebuild one of them (a search field with nothing stored)."""
        from souk.index.terms import feature_units

        rebuilt = {u.name for u in feature_units(schema)}
        if sum(len(u.values) for name, _, _ in plan if (u := store.units.get(name)) is not None) > MAX_IMPACT_TOKENS:
            return None
        fields = {}
        for name, analyzer, boost in plan:
            u = store.units.get(name)
            if u is not None and len(u.offsets) != len(store.ids) + 1:
                return None  # (a store read from disk that contradicts itself: rows past the documents' sums)
            if u is not None and u.unit.analyzer == getattr(analyzer, "name", None):
                fields[name] = FieldImpacts.of(np.asarray(u.offsets), np.asarray(u.values), len(store.vocab), boost)
            elif u is not None or name not in rebuilt:
                return None  # else: empty in every document, it adds nothing
        return cls(fields, store._term, store.ids)

    def top(self, terms_by_field: dict[str, list[str]], k: int) -> tuple[list[str], np.ndarray]:
        """The `k` best documents (ids, scores, best first) for the query's terms per field."""
        picked: list[tuple[FieldImpacts, list[View]]] = []
        postings = 0
        floor = 0.0  # FLOOR_K documents hold one of the query's terms with at least this score: so do the top k
        for name, terms in terms_by_field.items():
            f = self.fields.get(name)
            if f is None:
                continue
            views, found = f.views, []
            for t in terms:
                v = views.get(t) or f.view(t, self._term)
                if v is not None:
                    found.append(v)
                    postings += v[4] - v[3]
                    if v[2] > floor:
                        floor = v[2]
            if found:
                picked.append((f, found))
        if not picked or k <= 0:
            return [], np.zeros(0, dtype=np.float32)
        if not (0 < floor and k <= FLOOR_K):
            floor = 0.0
        ascending = True  # candidates in row order (the stable sort below then breaks ties as tantivy does)
        if len(picked) == 1 and len(picked[0][1]) == 1:  # one posting list: one entry per document already
            cand, sc = picked[0][1][0][0], picked[0][1][0][1]
        elif DENSE * postings >= self.num_docs:  # dense: one sum over every row (scifact: 5k postings, 5k docs)
            total = self._dense_sum(picked)
            # (a boolean mask: nonzero() on floats measured several times slower; the floor leaves a few
            # hundred candidates of thousands)
            cand = (total >= floor).nonzero()[0] if floor else (total > 0).nonzero()[0]
            sc = total[cand]
        else:  # sparse (homedepot: 3k postings, 55k docs): summed in a reused buffer, read back per posting
            cand, sc = self._sparse_sum(*_postings(picked), floor)
            ascending = False
        sc = sc.astype(np.float32)
        # (sorting every candidate instead when there are few: no quicker, scifact 45.3 vs 45.6 us a query at <= 300,
        # 47.7 vs 77.5 at <= 2048, all judged queries, interleaved, load 4)
        if len(cand) > k:  # the k best and every document tied with the k-th (the lowest rows win ties below)
            part = sc.copy()
            part.partition(len(sc) - k)
            keep = (sc >= part[len(sc) - k]).nonzero()[0]
            cand, sc = cand[keep], sc[keep]
        # (the array's own argsort: np.argsort's Python wrapper cost 1 us of a query's ~50, measured)
        order = ((-sc).argsort(kind="stable") if ascending else np.lexsort((cand, -sc)))[:k]
        return self._ids[cand[order]].tolist(), sc[order]

    def _dense_sum(self, picked: list[tuple[FieldImpacts, list[View]]]) -> np.ndarray:
        """Every document's summed score (f64) over the picked terms' postings: scattered in place, a field's
        terms in one call of scipy's compiled sparse product (`_compiled_scatter`), else concatenated into one
        `bincount` (the concatenation copies every posting: `top` on all scifact dev queries, best of 8 loops
        alternating with the `bincount` sum, 33.8 against 42.3 us a query; homedepot's dense queries gain alike)."""
        scatter = self._scatter
        if scatter is None:
            return np.bincount(*_postings(picked), minlength=self.num_docs)
        total = np.zeros(self.num_docs)
        for f, found in picked:
            # Term spans as the columns of a CSC matrix, latest start first: the column between two spans runs from
            # one's end back to the next one's start, so it is empty (and weighted 0 besides).
            spans = np.array(sorted([(v[3], v[4]) for v in found], reverse=True), dtype=np.intp).ravel()
            columns = len(spans) - 1
            weights = _ALTERNATE[:columns] if columns <= len(_ALTERNATE) else np.resize(_ALTERNATE[:2], columns)
            scatter(self.num_docs, columns, spans, f.rows, f.scores, weights, total)
        return total

    def _sparse_sum(self, rows: np.ndarray, scores: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
        """Distinct rows of `rows` (postings of several terms) whose summed scores reach `floor`, with the sums:
        no array of every document allocated per query (a buffer per thread, taken from a pool and zeroed after)."""
        try:
            acc, mark = self._buffers.pop()
        except IndexError:
            acc, mark = np.zeros(self.num_docs, dtype=np.float64), np.zeros(self.num_docs, dtype=np.intp)
        try:
            np.add.at(acc, rows, scores)
            total = acc[rows]
            acc[rows] = 0.0
            if floor:
                keep = (total >= floor).nonzero()[0]
                rows, total = rows[keep], total[keep]
            pos = np.arange(len(rows))
            mark[rows] = pos  # one position per document survives the scatter: keep that one
            first = (mark[rows] == pos).nonzero()[0]
            return rows[first], total[first]
        finally:
            self._buffers.append((acc, mark))
