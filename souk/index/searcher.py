"""The searcher: a snapshot of the last commit that answers keyword queries with filters, facets,
sorting, pagination and highlights, plus the cheap id-level paths retrieval stages build on.

A searcher never sees later commits; open a new one (`Index.searcher()`) to see them.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import tantivy

from souk.analysis.registry import Analyzer, get_analyzer
from souk.errors import QueryError
from souk.index.filters import Filter, combine, filter_query
from souk.index.highlight import highlight
from souk.index.keys import doc_keys
from souk.index.store import ID, KEY, SOURCE, meta_path
from souk.limits import EXACT_DISTINCT_LIMIT
from souk.analysis.syntax import is_strict, may_have_operators, parse_query
from souk.types import Hit, Ranking, SearchResult

if TYPE_CHECKING:
    from souk.index import Index

MAX_QUERY_CHARS = 1_000


@dataclass
class SearchRequest:
    """One keyword search. `sort` is a number field, `-name` for descending; `fields` overrides
    the schema's default search fields."""

    query: str = ""
    k: int = 10
    offset: int = 0
    filters: Sequence[Filter] = ()
    facets: Sequence[str] = ()
    facet_size: int = 10
    sort: str | None = None
    fields: Sequence[str] | None = None
    highlight: bool = True
    expansions: Sequence[tuple[str, float]] = ()  # (text, weight): optional words joined with a lower weight
    boosts: Sequence[tuple[Filter, float]] = ()  # (filter, weight): documents passing the filter score `weight` more


class Searcher:
    """Snapshot reader over one commit of an index."""

    def __init__(self, index: "Index"):
        self.index = index
        self.schema = index.schema
        self.path = index.path
        self._tschema = index._tantivy.schema
        for _ in range(5):
            before = _digest(meta_path(self.path))
            index._tantivy.reload()
            self._s = index._tantivy.searcher()
            if _digest(meta_path(self.path)) == before:
                break
        self.commit_id: str = before
        self.num_docs: int = self._s.num_docs
        self._id_table: tuple[np.ndarray, np.ndarray] | None = None  # sorted keys, ids in the same order
        self._user_dict = self.schema.analysis.get("user_dict")
        self._plans: dict[tuple[str, ...], list[tuple[str, Analyzer, float]]] = {}

    # ---- full search -------------------------------------------------------------------------
    def search(self, req: SearchRequest) -> SearchResult:
        """Keyword search with filters, facets, sort, pagination and highlights.

        A query whose "phrases" or +required words match nothing is relaxed to plain words
        (`SearchResult.relaxed` says so), the way a shop shows related products instead of nothing.
        """
        t0 = time.perf_counter()
        if req.k < 0 or req.offset < 0:
            raise QueryError("k and offset must be >= 0")
        result = self._search(req, relaxed=False)
        if result.total == 0 and is_strict(req.query):
            result = self._search(req, relaxed=True)
        result.took_ms = (time.perf_counter() - t0) * 1e3
        return result

    def _search(self, req: SearchRequest, relaxed: bool) -> SearchResult:
        query, terms = self.text_query(req.query, req.fields, relaxed)
        query = self._expand(query, req.expansions, req.fields, req.boosts)
        if query is None and req.query.strip() and not req.filters:
            return SearchResult([], 0, terms, relaxed=relaxed)
        q = combine(query, req.filters, self.schema, self._tschema)
        kwargs: dict[str, Any] = {}
        if req.sort:
            name = req.sort.lstrip("-+")
            self.schema.field(name, kinds=("number",))
            kwargs = {"order_by_field": name, "order": tantivy.Order.Desc if req.sort.startswith("-") else tantivy.Order.Asc}
        res = self._s.search(q, req.k, count=True, offset=req.offset, **kwargs) if req.k else None
        total = res.count if res is not None else self._s.search(q, 1, count=True).count
        term_set = set(terms)
        hits = []
        for score, addr in res.hits if res is not None else []:
            doc = self._s.doc(addr)
            source = json.loads(bytes(doc.get_first(SOURCE)))
            hl = self._highlights(source, term_set, req.fields) if req.highlight else {}
            hits.append(Hit(doc.get_first(ID), 0.0 if score is None else float(score), source, hl))  # None: sort value missing
        facets = {name: self._facet(q, name, req.facet_size) for name in req.facets}
        return SearchResult(hits, int(total), terms, facets, relaxed=relaxed)

    def text_query(self, text: str, fields: Sequence[str] | None = None,
                   relaxed: bool = False) -> tuple[tantivy.Query | None, list[str]]:
        """BM25 query over the search fields (boosted, per-field scores summed); None if no terms.

        Honours the query syntax of `souk.analysis.syntax`: "phrases", +required and -excluded words;
        `relaxed` turns phrases and required words into plain words (exclusions stay).
        """
        if len(text) > MAX_QUERY_CHARS:
            raise QueryError(f"query of {len(text)} characters is too long (max {MAX_QUERY_CHARS})")
        names = list(fields) if fields else self.schema.search_fields
        parsed = parse_query(text) if may_have_operators(text) else None
        if parsed is None or not parsed.has_operators:
            return self._match(text, names)
        Occur = tantivy.Occur
        clauses, terms = [], []
        strict = parsed.phrases + parsed.required
        parts = [(Occur.Should, " ".join([parsed.free, *strict]) if relaxed else parsed.free)]
        parts += [] if relaxed else [(Occur.Must, p) for p in strict]
        parts += [(Occur.MustNot, w) for w in parsed.excluded]
        for occur, part in parts:
            query, part_terms = self._match(part, names, phrase=occur != Occur.Should)
            if query is not None:
                clauses.append((occur, query))
                if occur != Occur.MustNot:
                    terms.extend(t for t in part_terms if t not in terms)
        if not any(occ != Occur.MustNot for occ, _ in clauses):
            if not clauses:
                return None, terms
            clauses.append((Occur.Must, tantivy.Query.all_query()))
        return tantivy.Query.boolean_query(clauses), terms

    def _match(self, text: str, names: Sequence[str], phrase: bool = False) -> tuple[tantivy.Query | None, list[str]]:
        """OR over fields of: any of the terms (BM25 sum), or with `phrase` all terms in order."""
        clauses: list[tuple[tantivy.Occur, tantivy.Query]] = []
        all_terms: list[str] = []
        analyzed: dict[Analyzer, list[str]] = {}
        for name, analyzer, boost in self._plan(tuple(names)):
            terms = analyzed.get(analyzer)
            if terms is None:
                terms = analyzed[analyzer] = analyzer.terms(text)
                all_terms.extend(t for t in terms if t not in all_terms)
            if not terms:
                continue
            if phrase and len(terms) > 1:
                queries = [tantivy.Query.phrase_query(self._tschema, name, terms)]
            else:
                queries = [tantivy.Query.term_query(self._tschema, name, t, index_option="freq") for t in terms]
            if boost != 1.0:
                queries = [tantivy.Query.boost_query(q, boost) for q in queries]
            clauses.extend((tantivy.Occur.Should, q) for q in queries)
        if not clauses:
            return None, all_terms
        return (clauses[0][1] if len(clauses) == 1 else tantivy.Query.boolean_query(clauses)), all_terms

    def _plan(self, names: tuple[str, ...]) -> list[tuple[str, Analyzer, float]]:
        """(field, analyzer, boost) of each search field, checked once per field list."""
        plan = self._plans.get(names)
        if plan is None:
            fields = [self.schema.field(n, kinds=("text",)) for n in names]
            plan = self._plans[names] = [(f.name, get_analyzer(f.analyzer, self._user_dict), f.boost) for f in fields]
        return plan

    def warm(self) -> None:
        """Load what the first query would otherwise wait for (jieba's dictionary for Chinese fields), only when
        the index holds Chinese text (a sample of its documents): an English index never loads jieba or OpenCC."""
        if not self._holds_han():
            return
        for _, analyzer, _ in self._plan(tuple(self.schema.search_fields)):
            analyzer.terms("中文")

    def _holds_han(self, sample: int = 64) -> bool:
        from souk.analysis.normalize import has_han

        for _, addr in self._s.search(tantivy.Query.all_query(), sample, count=False).hits:
            if has_han(json.dumps(json.loads(bytes(self._s.doc(addr).get_first(SOURCE))), ensure_ascii=False)):
                return True
        return False

    # ---- cheap paths for retrieval stages ------------------------------------------------------
    def _expand(self, query: tantivy.Query | None, expansions: Sequence[tuple[str, float]],
                fields: Sequence[str] | None = None, boosts: Sequence[tuple[Filter, float]] = ()) -> tantivy.Query | None:
        """`query` OR the expansion words, each scored with its weight, OR the boosts (documents passing
        a boost's filter get its weight added); none of them is ever required."""
        if (not expansions and not boosts) or query is None:
            return query
        clauses = [(tantivy.Occur.Should, query)]
        for text, weight in expansions:
            extra, _ = self._match(text, list(fields) if fields else self.schema.search_fields)
            if extra is not None and weight > 0:
                clauses.append((tantivy.Occur.Should, tantivy.Query.boost_query(extra, float(weight))))
        for flt, weight in boosts:
            _, matches = filter_query(flt, self.schema, self._tschema)
            if weight > 0:
                clauses.append((tantivy.Occur.Should, tantivy.Query.const_score_query(matches, float(weight))))
        return tantivy.Query.boolean_query(clauses) if len(clauses) > 1 else query

    def bm25(self, text: str, k: int, filters: Sequence[Filter] = (), relaxed: bool = False,
             expansions: Sequence[tuple[str, float]] = (), boosts: Sequence[tuple[Filter, float]] = ()) -> Ranking:
        """Top-k ids and BM25 scores without fetching stored documents (relaxed like `search`)."""
        query, _ = self.text_query(text, relaxed=relaxed)
        query = self._expand(query, expansions, None, boosts)
        if query is None or k <= 0:
            return Ranking.empty()
        if filters:
            query = combine(query, filters, self.schema, self._tschema)
        hits = self._s.search(query, k, count=False).hits
        if not hits:
            return self.bm25(text, k, filters, True, expansions, boosts) if not relaxed and is_strict(text) else Ranking.empty()
        scores, addrs = zip(*hits)
        keys = self._s.fast_field_values(KEY, list(addrs))  # this snapshot's own hits: always in the table
        return Ranking(self.keys_to_ids(keys, check=False), np.asarray(scores, dtype=np.float32))

    def filter_keys(self, filters: Sequence[Filter]) -> np.ndarray:
        """Keys (int64) of every live document passing all filters."""
        q = combine(None, filters, self.schema, self._tschema)
        return self._keys_of(self._s.search(q, max(self.num_docs, 1), count=False).hits)

    def keys_to_ids(self, keys: Sequence[int] | np.ndarray, check: bool = True) -> list[str]:
        """Document ids of keys (as produced by `souk.index.keys.doc_key`); unknown keys raise KeyError.
        `check=False` skips that test for keys read from this snapshot (the hot path of `bm25`)."""
        sorted_keys, ids = self._ids_table()
        keys = np.asarray(keys, dtype=np.int64)
        pos = np.searchsorted(sorted_keys, keys)
        if check and len(keys) and (pos.max() >= len(sorted_keys) or not np.array_equal(sorted_keys[pos], keys)):
            raise KeyError("keys not in this snapshot of the index")
        return ids[pos].tolist()

    def stored_bytes(self, field_name: str) -> tuple[np.ndarray, list[bytes]]:
        """Keys and raw stored bytes of one bytes field for every live document."""
        addrs = self._all_addresses()
        docs = [self._s.doc(a) for a in addrs]
        keys = self._keys_of([(0.0, a) for a in addrs])
        return keys, [bytes(d.get_first(field_name) or b"") for d in docs]

    def docs(self, ids: Sequence[str]) -> list[dict[str, Any] | None]:
        """Stored fields of documents by id (None for unknown ids)."""
        out = []
        for doc_id in ids:
            hits = self._s.search(tantivy.Query.term_query(self._tschema, ID, doc_id), 1, count=False).hits
            out.append(json.loads(bytes(self._s.doc(hits[0][1]).get_first(SOURCE))) if hits else None)
        return out

    def hits(self, ranking: Ranking, query: str = "", highlight: bool = True) -> list[Hit]:
        """Stored documents and highlights for a ranking made by any pipeline (unknown ids are dropped)."""
        out = [Hit(doc_id, float(score), doc, {})
               for doc_id, score, doc in zip(ranking.ids, ranking.scores, self.docs(ranking.ids)) if doc is not None]
        if highlight and query:
            self.highlight(out, self.text_query(query, relaxed=True)[1])
        return out

    def highlight(self, hits: Sequence[Hit], terms: Sequence[str]) -> None:
        """Fill the highlights of hits found without them (from their stored documents)."""
        term_set = set(terms)
        for hit in hits:
            hit.highlights = self._highlights(hit.doc, term_set, None) if term_set else {}

    def _addresses_of(self, ids: Sequence[str]) -> list[tantivy.DocAddress | None]:
        """Doc addresses of ids in this snapshot (None for unknown ids), in the order given."""
        if not ids:
            return []
        keys = doc_keys(list(ids))
        query = tantivy.Query.term_set_query(self._tschema, KEY, [int(k) for k in keys])
        hits = self._s.search(query, len(ids), count=False).hits
        found = dict(zip(self._keys_of(hits).tolist(), (a for _, a in hits)))
        return [found.get(int(k)) for k in keys]

    def numbers(self, ids: Sequence[str], name: str) -> np.ndarray:
        """Values of number field `name` for ids (NaN where unknown or missing); reads fast fields only."""
        self.schema.field(name, kinds=("number",))
        addrs = self._addresses_of(ids)
        live = [i for i, a in enumerate(addrs) if a is not None]
        out = np.full(len(ids), np.nan)
        if live:
            values = self._s.fast_field_values(name, [addrs[i] for i in live])
            out[live] = [np.nan if v is None else v for v in values]
        return out

    def facets_of(self, ids: Sequence[str], names: Sequence[str], size: int = 10) -> dict[str, Any]:
        """Facets over exactly the documents `ids` (a pipeline's candidates)."""
        if not names:
            return {}
        keys = [int(k) for k in doc_keys(list(ids))] if ids else []
        query = tantivy.Query.term_set_query(self._tschema, KEY, keys) if keys else tantivy.Query.empty_query()
        return {name: self._facet(query, name, size) for name in names}

    def ids(self) -> list[str]:
        """Every live document id."""
        return self._ids_table()[1].tolist()

    # ---- internals ---------------------------------------------------------------------------
    def _all_addresses(self) -> list[tantivy.DocAddress]:
        if self.num_docs == 0:
            return []
        return [a for _, a in self._s.search(tantivy.Query.all_query(), self.num_docs, count=False).hits]

    def _keys_of(self, hits: list) -> np.ndarray:
        if not hits:
            return np.zeros(0, dtype=np.int64)
        return np.asarray(self._s.fast_field_values(KEY, [a for _, a in hits]), dtype=np.int64)

    def _ids_table(self) -> tuple[np.ndarray, np.ndarray]:
        """Keys sorted, with the ids in the same order: a vectorized key -> id map built once per snapshot."""
        if self._id_table is None:
            ids = np.asarray([self._s.doc(a).get_first(ID) for a in self._all_addresses()], dtype=object)
            keys = doc_keys(ids.tolist())
            order = np.argsort(keys)
            self._id_table = (keys[order], ids[order])
        return self._id_table

    def _facet(self, query: tantivy.Query, name: str, size: int) -> dict[str, Any]:
        f = self.schema.field(name, kinds=("keyword", "number"))
        if f.kind == "number":
            stats = self._s.aggregate(query, {"s": {"stats": {"field": name}}})["s"]
            return {k: stats.get(k) for k in ("min", "max", "avg", "count")}
        res = self._s.aggregate(query, {"t": {"terms": {"field": name, "size": size}}})["t"]
        return {
            "buckets": [(b["key"], b["doc_count"]) for b in res["buckets"]],
            "distinct": (distinct := int(self._s.cardinality(query, name))),
            "approximate": distinct > EXACT_DISTINCT_LIMIT,
            "other": res.get("sum_other_doc_count", 0),
        }

    def _highlights(self, source: dict, terms: set[str], fields: Sequence[str] | None) -> dict[str, str]:
        out = {}
        for name in fields or self.schema.search_fields:
            f = self.schema.fields[name]
            for src in f.copy_from or [name]:
                text = source.get(src)
                if isinstance(text, str) and src not in out:
                    snippet = highlight(text, terms, get_analyzer(f.analyzer, self._user_dict))
                    if snippet:
                        out[src] = snippet
        return out


def _digest(path) -> str:
    try:
        return hashlib.sha1(path.read_bytes()).hexdigest()[:16]
    except FileNotFoundError:
        return "empty"
