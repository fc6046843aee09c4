"""The searcher: a snapshot of the last commit that answers keyword queries with filters, facets,
sorting, pagination and highlights, plus the cheap id-level paths retrieval stages build on.

A searcher never sees later commits; open a new one (`Index.searcher()`) to see them.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
import tantivy

from souk.analysis.normalize import normalize
from souk.analysis.registry import Analyzer, get_analyzer
from souk.errors import QueryError
from souk.analysis.values import PATH_JOINER, canonical_path
from souk.index.filters import _REGEX_META, Filter, combine, filter_query
from souk.index.highlight import highlight
from souk.index.keys import doc_keys
from souk.index.matching import MatchConfig, drop_order, match_config, word_spans
from souk.index.store import ID, KEY, SOURCE, meta_path
from souk.limits import EXACT_DISTINCT_LIMIT
from souk.analysis.syntax import is_strict, may_have_operators, parse_query
from souk.types import Hit, Ranking, SearchResult

if TYPE_CHECKING:
    from souk.index import Index

MAX_QUERY_CHARS = 1_000
# The constant bonus for two neighbouring query words within PROXIMITY_SLOP positions of each other (per field),
# with the relax/all strategies. Measured with the `-1` floor (nDCG@10, dev / train): scifact 0.6961 -> 0.7002 (const
# 1.5) / 0.6958 -> 0.6982 (1.0); homedepot 0.3896 -> 0.3935 / 0.3808 -> 0.3840; a BM25-weighted phrase bonus hurt
# scifact (0.6961 -> 0.6509 at weight 1).
PROXIMITY = 1.0
PROXIMITY_SLOP = 2
MAX_LEVEL_BUCKETS = 1_000  # values of one level of a hierarchy facet counted exactly
SKIP_WORDS = 3
# A query of this many distinct terms or more (natural-language questions, long product descriptions) shows, after
# the documents holding its words, the others holding some of them in BM25 order; shorter ones the matched set only.
# Served-page nDCG@10 (dev, every page as `Engine.search` returns it) with and without: see README "Matching".
LONG_QUERY_TERMS = 3


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
    expansions: Sequence[tuple] = ()  # (text, weight[, of]): optional words joined with a lower weight; `of`: the
    # query words the expansion stands for (a synonym of a word counts as that word when words must match)
    boosts: Sequence[tuple[Filter, float]] = ()  # (filter, weight): documents passing the filter score `weight` more
    match: str | None = None  # "all" | "relax" | "any"; None: the index's `[query] match`


@dataclass
class _Word:
    """One word of a query: its text, a query for the documents holding all its terms (or a synonym)."""

    text: str
    clause: tantivy.Query
    terms: list[tuple[str, list[str]]]  # (field, the word's terms there): its document frequency, read when relaxing
    alternative: bool = False  # a synonym stands in for it


@dataclass
class _Tier:
    """Documents holding the kept words (`query`, cumulative) and those new at this step (`fresh`)."""

    query: tantivy.Query | None  # None: no words to match (every document)
    fresh: tantivy.Query | None
    dropped: list[str]
    kept: tantivy.Query | None = None  # documents holding every kept word (None: no condition)
    count: int | None = None  # documents of `query` under the request's filters, when already counted


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
        self.matching: MatchConfig = match_config(self.schema.query)
        self.proximity: float = PROXIMITY
        self._impacts: Any = None  # `souk.index.impacts.Impacts` once `prepare_bm25` built them
        self._analysis_groups: list[tuple[list[str], Any]] | None = None  # (fields, their analyzer's `terms`)

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
        query, terms = self.text_query(req.query, req.fields, relaxed,
                                       proximity=(req.match or self.matching.mode) != "any")
        query = self._expand(query, req.expansions, req.fields, req.boosts)
        typed = len(set(terms))  # the query's own terms (a long query is followed by partial matches)
        if typed >= LONG_QUERY_TERMS:
            typed = self._typed_terms(req.query, req.fields or self.schema.search_fields, typed)
        terms = terms + self.expansion_terms(req.expansions, req.fields, terms)  # highlighted too
        if query is None and req.query.strip() and not req.filters:
            return SearchResult([], 0, terms, relaxed=relaxed)
        kwargs: dict[str, Any] = {}
        if req.sort:
            name = req.sort.lstrip("-+")
            self.schema.field(name, kinds=("number",))
            kwargs = {"order_by_field": name, "order": tantivy.Order.Desc if req.sort.startswith("-")
                      else tantivy.Order.Asc}
        more = self._tiers(query, req.query, req.fields, relaxed, req.match, req.expansions, terms, req.filters) \
            if query is not None else iter(())
        # no words to match (filters only, one single-term word): every match
        first = next(more, None) or _Tier(query, query, [])
        q = combine(first.query, req.filters, self.schema, self._tschema)
        res = (
            self._s.search(q, req.k, count=True, offset=req.offset, **kwargs)
            if req.k
            else self._s.search(q, 1, count=True)
        )
        if res.count >= self.matching.relax_below:  # the usual case: one search
            more = iter(())
        chosen, counts, tiers = self._chosen(first, res.count, more, req.filters)
        rest = self._rest(query, tiers[chosen], req, typed)
        if chosen == 0 and rest is None:
            return self._result(req, res.hits if req.k else [], res.count, terms, tiers[0], relaxed)
        total, tiers = counts[chosen], tiers[:chosen + 1]
        sizes = [c - (counts[i - 1] if i else 0) for i, c in enumerate(counts[:chosen + 1])]
        if rest is not None:
            rest_count = self._s.search(combine(rest.fresh, req.filters, self.schema, self._tschema), 1,
                                        count=True).count
            if rest_count:
                tiers, sizes, total = tiers + [rest], sizes + [rest_count], total + rest_count
        rows: list[tuple[Any, Any]] = []
        start, want = req.offset, req.k
        for tier, size in zip(tiers, sizes):
            if want <= 0:
                break
            if start >= size:
                start -= size
                continue
            q = combine(tier.fresh, req.filters, self.schema, self._tschema)
            rows.extend(self._s.search(q, want, count=False, offset=start, **kwargs).hits)
            want, start = req.k - len(rows), 0
        result = self._result(req, rows, total, terms, tiers[chosen], relaxed)
        if len(tiers) > chosen + 1:  # documents holding fewer words follow the matched set: say so
            result.relaxed, result.partial = True, sizes[-1]
        return result

    def _typed_terms(self, text: str, names: Sequence[str], counted: int) -> int:
        """`counted` terms of a query, with a word given whole and as parts (`w49x`: w, 49, x) counted once, as
        typed: a model number alone is no long query."""
        plan = self._plan(tuple(names))
        if not any(analyzer.parts for _, analyzer, _ in plan):
            return counted
        tokens = plan[0][1].tokens(text)
        wholes = [(t.start, t.end) for t in tokens if t.whole]
        if not wholes:
            return counted
        return len({t.text for t in tokens if t.whole or not any(a <= t.start and t.end <= b for a, b in wholes)})

    def _rest(self, query: tantivy.Query | None, chosen: _Tier, req: SearchRequest, typed: int) -> _Tier | None:
        """For a long query (`LONG_QUERY_TERMS` or more terms) ranked by relevance under `relax`: the other
        documents holding some of its words, in BM25 order, to follow the matched set (as Meilisearch fills a
        page); None otherwise. A short query or a sorted page shows the matched set only.
        Misuse: appending them to a sorted page (a product missing words would surface by price)."""
        mode = req.match or self.matching.mode
        if query is None or req.sort or mode != "relax" or chosen.kept is None or typed < LONG_QUERY_TERMS:
            return None
        rest = tantivy.Query.boolean_query([(tantivy.Occur.Must, query), (tantivy.Occur.MustNot, chosen.kept)])
        return _Tier(rest, rest, list(chosen.dropped))

    def _result(self, req: SearchRequest, rows: list, total: int, terms: list[str], chosen: _Tier,
                relaxed: bool) -> SearchResult:
        """Hits of `rows` (score, address) with highlights, facets over the chosen tier's documents."""
        term_set = set(terms)
        hits = []
        for score, addr in rows:
            doc = self._s.doc(addr)
            source = json.loads(bytes(doc.get_first(SOURCE)))
            hl = self._highlights(source, term_set, req.fields) if req.highlight else {}
            # None: sort value missing
            hits.append(Hit(doc.get_first(ID), 0.0 if score is None else float(score), source, hl))
        q = combine(chosen.query, req.filters, self.schema, self._tschema)
        facets = {name: self._facet(q, name, req.facet_size, req.filters) for name in req.facets}
        dropped = chosen.dropped
        return SearchResult(hits, int(total), terms, facets, relaxed=relaxed or bool(dropped), dropped=list(dropped))

    def _chosen(self, first: _Tier, count: int | None, more: Any,
                filters: Sequence[Filter]) -> tuple[int, list[int], list[_Tier]]:
        """The strictest tier whose documents (with all above it) number `relax_below` or more, else the
        last (`first`, its count if known, then the tiers of `more`, made as needed); the cumulative
        counts and the tiers counted."""
        tiers, counts = [first], []
        while True:
            if count is None:
                q = combine(tiers[-1].query, filters, self.schema, self._tschema)
                count = self._s.search(q, 1, count=True).count
            counts.append(count)
            if count >= self.matching.relax_below:
                break
            tier = next(more, None)
            if tier is None:
                break
            tiers.append(tier)
            count = tier.count
        chosen = len(counts) - 1
        while chosen > 0 and counts[chosen] == counts[chosen - 1]:
            chosen -= 1  # dropping a word that found nothing more is no relaxation
        return chosen, counts, tiers

    def _tiers(self, query: tantivy.Query, text: str, fields: Sequence[str] | None, relaxed: bool,
               match: str | None, expansions: Sequence[tuple] = (), terms: Sequence[str] | None = None,
               filters: Sequence[Filter] = ()) -> Iterator[_Tier]:
        """The matching strategy as tiers, strictest first, made as they are asked for (see
        `souk.index.matching`): every word, then one word fewer at a time, the first word in drop order
        whose dropping finds more documents (under `filters`); `any` (and one-term queries): none."""
        mode = match or self.matching.mode
        if mode not in ("all", "relax", "any"):
            raise QueryError(f"match: expected all, relax or any, got {mode!r}")
        if mode == "any":
            return
        alternatives = [(e[0], e[2]) for e in expansions if len(e) > 2 and e[2]]
        if terms is not None and len(set(terms)) <= 1 and not alternatives:
            return  # one term: BM25 over it already means every word
        names = list(fields) if fields else self.schema.search_fields
        parsed = parse_query(text) if may_have_operators(text) else None
        free = text if parsed is None or not parsed.has_operators else (
            " ".join([parsed.free, *parsed.phrases, *parsed.required]) if relaxed else parsed.free)
        words = self._words(free, names, alternatives)
        if not words:
            return
        Occur = tantivy.Occur
        floor = self.matching.required(len(words))
        kept = list(range(len(words)))
        order: list[int] | None = None
        dropped: list[str] = []

        def count(q: tantivy.Query | None) -> int:
            return self._s.search(combine(q, filters, self.schema, self._tschema), 1, count=True).count

        q = self._holding(query, [words[i] for i in kept])
        tier = _Tier(q, q, [], self._all_of([words[i] for i in kept]))
        while True:
            yield tier
            if mode != "relax" or len(kept) <= floor:
                return
            if order is None:
                order = drop_order([self._df(w) for w in words])
            now = tier.count if tier.count is not None else count(tier.query)
            # the first word in drop order whose dropping finds more documents (else the first), for queries of up to
            # SKIP_WORDS words: on long claims it ranked n-1-word matches first and lost (scifact train 0.698 -> 0.692)
            for i in order if len(words) <= SKIP_WORDS else order[:1]:
                rest = [words[j] for j in kept if j != i]
                q = self._holding(query, rest)
                found = count(q)
                if found > now:
                    break
            else:
                i = order[0]
                rest = [words[j] for j in kept if j != i]
                q = self._holding(query, rest)
                found = now
            order.remove(i)
            kept.remove(i)
            dropped.append(words[i].text)
            fresh = tantivy.Query.boolean_query([(Occur.Must, q), (Occur.MustNot, words[i].clause)])
            tier = _Tier(q, fresh, list(dropped), self._all_of(rest), found)

    def _df(self, word: _Word) -> int:
        """About how many documents hold the word: its rarest term's count in the field where that is
        highest (at least 1 when a synonym stands in for it)."""
        df = max((min(self._s.doc_freq(name, t) for t in terms) for name, terms in word.terms if terms), default=0)
        return max(df, 1) if word.alternative else df

    def _all_terms(self, text: str, names: Sequence[str]) -> tantivy.Query | None:
        """Documents holding every term of `text` in one of the search fields (None: no terms); a word given whole
        and as parts, by its parts."""
        Occur = tantivy.Occur
        per_field = []
        for name, analyzer, _ in self._plan(tuple(names)):
            terms = list(dict.fromkeys(analyzer.required_terms(text)))
            if terms:
                qs = [tantivy.Query.term_query(self._tschema, name, t) for t in terms]
                per_field.append(qs[0] if len(qs) == 1 else tantivy.Query.boolean_query([(Occur.Must, q) for q in qs]))
        if not per_field:
            return None
        return (
            per_field[0] if len(per_field) == 1 else tantivy.Query.boolean_query([(Occur.Should, q) for q in per_field])
        )

    @staticmethod
    def _all_of(words: Sequence[_Word]) -> tantivy.Query:
        """Documents holding every one of `words`."""
        if len(words) == 1:
            return words[0].clause
        return tantivy.Query.boolean_query([(tantivy.Occur.Must, w.clause) for w in words])

    @staticmethod
    def _holding(query: tantivy.Query, words: Sequence[_Word]) -> tantivy.Query:
        """`query` (its scores) limited to documents holding every one of `words`."""
        if not words:
            return query
        clauses = [(tantivy.Occur.Must, query)]
        clauses += [(tantivy.Occur.Must, tantivy.Query.const_score_query(w.clause, 0.0)) for w in words]
        return tantivy.Query.boolean_query(clauses)

    def _words(self, text: str, names: Sequence[str], alternatives: Sequence[tuple[str, str]] = ()) -> list[_Word]:
        """The query's words (`souk.index.matching.word_spans`), each a query for documents holding all of
        its terms in one search field, or an alternative (`(text, of)`: a synonym of the words `of`) in
        its place; words without index terms (stopwords) are left out. A query of one word with one term
        and no alternative gives no words (plain BM25 already means that)."""
        plan = self._plan(tuple(names))
        if not plan or not text.strip():
            return []
        norm = normalize(text)
        tokens_of: dict[Analyzer, list] = {}
        for _, analyzer, _ in plan:
            if analyzer not in tokens_of:
                tokens_of[analyzer] = analyzer.tokens(text)
        spans = word_spans(norm, tokens_of[plan[0][1]])
        if not spans:
            return []
        per_word: list[dict[str, list[str]]] = [{} for _ in spans]
        for name, analyzer, _ in plan:
            for tok in tokens_of[analyzer]:
                if tok.whole:
                    continue  # its parts (the tokens inside its span) are what the word requires; the whole scores
                for i, (a, b) in enumerate(spans):
                    if a <= tok.start < b:
                        field_terms = per_word[i].setdefault(name, [])
                        if tok.text not in field_terms:
                            field_terms.append(tok.text)
                        break
        words: list[_Word] = []
        Occur = tantivy.Occur
        for (a, b), by_field in zip(spans, per_word):
            if not by_field:
                continue
            per_field, alternative = [], False
            for name, field_terms in by_field.items():
                term_qs = [tantivy.Query.term_query(self._tschema, name, t) for t in field_terms]
                per_field.append(term_qs[0] if len(term_qs) == 1 else
                                 tantivy.Query.boolean_query([(Occur.Must, tq) for tq in term_qs]))
            word = norm[a:b]
            for alt, of in alternatives:
                of = normalize(of)
                if of and (of in word or word in of):
                    alt_clause = self._all_terms(alt, names)
                    if alt_clause is not None:
                        per_field.append(alt_clause)
                        alternative = True
            clause = (
                per_field[0]
                if len(per_field) == 1
                else tantivy.Query.boolean_query([(Occur.Should, q) for q in per_field])
            )
            words.append(_Word(word, clause, list(by_field.items()), alternative))
            single = len(per_field) == 1 and all(len(t) == 1 for t in by_field.values())
        if len(words) == 1 and single:
            return []
        return words

    def text_query(self, text: str, fields: Sequence[str] | None = None, relaxed: bool = False,
                   proximity: bool = False) -> tuple[tantivy.Query | None, list[str]]:
        """BM25 query over the search fields (boosted, per-field scores summed); None if no terms.

        Honours the query syntax of `souk.analysis.syntax`: "phrases", +required and -excluded words;
        `relaxed` turns phrases and required words into plain words (exclusions stay); `proximity` adds
        a constant bonus for each pair of neighbouring query words found within a few positions.
        """
        if len(text) > MAX_QUERY_CHARS:
            raise QueryError(f"query of {len(text)} characters is too long (max {MAX_QUERY_CHARS})")
        names = list(fields) if fields else self.schema.search_fields
        parsed = parse_query(text) if may_have_operators(text) else None
        if parsed is None or not parsed.has_operators:
            return self._match(text, names, proximity=proximity)
        Occur = tantivy.Occur
        clauses: list[tuple[tantivy.Occur, tantivy.Query]] = []
        terms: list[str] = []
        strict = parsed.phrases + parsed.required
        parts = [(Occur.Should, " ".join([parsed.free, *strict]) if relaxed else parsed.free)]
        parts += [] if relaxed else [(Occur.Must, p) for p in strict]
        parts += [(Occur.MustNot, w) for w in parsed.excluded]
        for occur, part in parts:
            query, part_terms = self._match(part, names, phrase=occur != Occur.Should, proximity=proximity)
            if query is not None:
                clauses.append((occur, query))
                if occur != Occur.MustNot:
                    terms.extend(t for t in part_terms if t not in terms)
        if not any(occ != Occur.MustNot for occ, _ in clauses):
            if not clauses:
                return None, terms
            clauses.append((Occur.Must, tantivy.Query.all_query()))
        return tantivy.Query.boolean_query(clauses), terms

    def _match(self, text: str, names: Sequence[str], phrase: bool = False,
               proximity: bool = False) -> tuple[tantivy.Query | None, list[str]]:
        """OR over fields of: any of the terms (BM25 sum), or with `phrase` all terms in order."""
        clauses: list[tuple[tantivy.Occur, tantivy.Query]] = []
        all_terms: list[str] = []
        analyzed: dict[Analyzer, list[str]] = {}
        pairs_of: dict[Analyzer, list[tuple[str, str]]] = {}
        plan = self._plan(tuple(names))
        top = max((b for _, _, b in plan), default=1.0)  # proximity counts in the most boosted (title) fields
        for name, analyzer, boost in plan:
            terms = analyzed.get(analyzer)
            if terms is None:
                terms = analyzed[analyzer] = analyzer.terms(text)
                all_terms.extend(t for t in terms if t not in all_terms)
            if not terms:
                continue
            if phrase and len(terms) > 1:
                # (a word given whole and as parts is its parts in a phrase: `"iphone12 case"` finds iphone 12 case)
                in_order = analyzer.required_terms(text) if analyzer.parts else terms
                queries = [tantivy.Query.phrase_query(self._tschema, name, list(in_order))]
            else:
                queries = [tantivy.Query.term_query(self._tschema, name, t, index_option="freq") for t in terms]
                # a bonus for query words standing close together
                if proximity and self.proximity > 0 and len(terms) > 1 and boost == top:
                    pairs = pairs_of.get(analyzer)
                    if pairs is None:
                        pairs = pairs_of[analyzer] = _adjacent_pairs(analyzer.tokens(text))
                    queries += [
                        tantivy.Query.const_score_query(
                            tantivy.Query.phrase_query(self._tschema, name, list(p), slop=PROXIMITY_SLOP),
                            self.proximity,
                        )
                        for p in pairs
                    ]
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
            plan = self._plans[names] = [(f.name, get_analyzer(self.schema.analyzer_of(f), self._user_dict), f.boost)
                                         for f in fields]
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
                fields: Sequence[str] | None = None,
                boosts: Sequence[tuple[Filter, float]] = ()) -> tantivy.Query | None:
        """`query` OR the expansion words, each scored with its weight, OR the boosts (documents passing
        a boost's filter get its weight added); none of them is ever required."""
        if (not expansions and not boosts) or query is None:
            return query
        clauses = [(tantivy.Occur.Should, query)]
        for text, weight, *_ in expansions:
            extra, _ = self._match(text, list(fields) if fields else self.schema.search_fields)
            if extra is not None and weight > 0:
                clauses.append((tantivy.Occur.Should, tantivy.Query.boost_query(extra, float(weight))))
        for flt, weight in boosts:
            _, matches = filter_query(flt, self.schema, self._tschema)
            if weight > 0:
                clauses.append((tantivy.Occur.Should, tantivy.Query.const_score_query(matches, float(weight))))
        return tantivy.Query.boolean_query(clauses) if len(clauses) > 1 else query

    def bm25(self, text: str, k: int, filters: Sequence[Filter] = (), relaxed: bool = False,
             expansions: Sequence[tuple] = (), boosts: Sequence[tuple[Filter, float]] = (),
             match: str | None = "any") -> Ranking:
        """Top-k ids and BM25 scores without fetching stored documents (relaxed like `search`).

        `match` (None: the index's `[query] match`) orders documents holding every word first, then
        those holding one word fewer, ... (BM25 inside each tier), filling `k` from every allowed tier;
        "any" (the default, for candidate generation) is plain BM25 over any word; that one, without filters,
        boosts, expansions or query operators, is read from the impacts when `prepare_bm25` built them."""
        if self._impacts is None:
            self._impacts_when_store_open()
        if self._impacts and not (filters or expansions or boosts) and (match or self.matching.mode) == "any" \
                and len(text) <= MAX_QUERY_CHARS:
            if not may_have_operators(text):
                return self._bm25_impacts(text, k)
            if relaxed and (words := _relaxed_words(text)) is not None:  # (a phrase that matched nothing)
                return self._bm25_impacts(words, k)
        query, terms = self.text_query(text, relaxed=relaxed, proximity=(match or self.matching.mode) != "any")
        query = self._expand(query, expansions, None, boosts)
        if query is None or k <= 0:
            return Ranking.empty()
        more = self._tiers(query, text, None, relaxed, match, expansions, terms, filters)
        first = next(more, None)
        if first is None:
            tiers = [_Tier(query, query, [])]
        else:  # as `search` relaxes: the strictest tiers holding `relax_below` documents
            chosen, _, tiers = self._chosen(first, None, more, filters)
            tiers = tiers[:chosen + 1]
        if tiers[-1].kept is not None and (match or self.matching.mode) == "relax":
            rest = tantivy.Query.boolean_query([(tantivy.Occur.Must, query), (tantivy.Occur.MustNot, tiers[-1].kept)])
            tiers.append(_Tier(rest, rest, []))  # the other candidates, BM25 order, below the matches
        rows: list = []
        scores: list[float] = []
        for tier in tiers:
            q = combine(tier.fresh, filters, self.schema, self._tschema) if filters else tier.fresh
            found = self._s.search(q, k - len(rows), count=False).hits
            if found:
                tier_scores = np.asarray([s for s, _ in found], dtype=np.float64)
                if scores:  # a lower tier ranks below every document of the tiers above it
                    tier_scores = tier_scores - max(0.0, tier_scores.max() - scores[-1]) - 1e-3
                rows.extend(a for _, a in found)
                scores.extend(tier_scores.tolist())
            if len(rows) >= k:
                break
        if not rows:
            return (
                self.bm25(text, k, filters, True, expansions, boosts, match)
                if not relaxed and is_strict(text)
                else Ranking.empty()
            )
        keys = self._s.fast_field_values(KEY, rows)  # this snapshot's own hits: always in the table
        return Ranking(self.keys_to_ids(keys, check=False), np.asarray(scores, dtype=np.float32))

    def prepare_bm25(self) -> bool:
        """Build the impacts (`souk.index.impacts`) of this snapshot's search fields from its term store (built
        and cached per commit when missing: seconds for ~50k documents), so that plain `bm25` queries skip
        tantivy. False when the search fields cannot be rebuilt from stored values (tantivy keeps answering)."""
        if self._impacts is None:
            self._impacts = self._built_impacts()
        return bool(self._impacts)

    def _built_impacts(self) -> Any:
        from souk.index.impacts import Impacts
        from souk.index.terms import TermStore

        return Impacts.of(TermStore.open(self), self.schema, self._plan(tuple(self.schema.search_fields))) or False

    def _impacts_when_store_open(self) -> None:
        """Once ranking features opened this snapshot's term store, build the impacts from it in a thread (tantivy
        answers meanwhile): pipelines with features get the quick path without a query waiting for it."""
        from souk.index.terms import is_open

        if not is_open(self):
            return
        self._impacts = False  # (building: asked once)

        def build() -> None:
            try:
                self._impacts = self._built_impacts()
            except Exception:  # noqa: BLE001 - tantivy keeps answering
                pass

        import threading

        threading.Thread(target=build, name="souk-impacts", daemon=True).start()

    def _bm25_impacts(self, text: str, k: int) -> Ranking:
        groups = self._analysis_groups
        if groups is None:  # once per snapshot: runs of search fields sharing an analyzer share its terms
            groups, last = [], None
            for name, analyzer, _ in self._plan(tuple(self.schema.search_fields)):
                if analyzer is not last:
                    groups.append(([], analyzer.terms))
                    last = analyzer
                groups[-1][0].append(name)
            self._analysis_groups = groups
        terms: dict[str, list[str]] = {}
        for names, terms_of in groups:
            found = terms_of(text)
            for name in names:
                terms[name] = found
        ids, scores = self._impacts.top(terms, k)
        return Ranking(ids, scores) if ids else Ranking.empty()

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

    def live_keys(self) -> np.ndarray:
        """Keys of every live document, in the order `stored_bytes` gives them (fast fields only)."""
        return self._keys_of([(0.0, a) for a in self._all_addresses()])

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

    def hits(self, ranking: Ranking, query: str = "", highlight: bool = True,
             expansions: Sequence[tuple[str, float]] = ()) -> list[Hit]:
        """Stored documents and highlights (of the query's words and its `expansions`: synonyms) for a
        ranking made by any pipeline (unknown ids are dropped)."""
        out = [Hit(doc_id, float(score), doc, {})
               for doc_id, score, doc in zip(ranking.ids, ranking.scores, self.docs(ranking.ids)) if doc is not None]
        if highlight and query:
            terms = self.text_query(query, relaxed=True)[1]
            self.highlight(out, terms + self.expansion_terms(expansions, None, terms))
        return out

    def expansion_terms(self, expansions: Sequence[tuple], fields: Sequence[str] | None = None,
                        known: Sequence[str] = ()) -> list[str]:
        """The analyzed terms of expansion words (synonyms) not in `known`, for highlighting."""
        out: list[str] = []
        for text, weight, *_ in expansions:  # (text, weight) or (text, weight, of)
            if weight > 0:
                for t in self._match(text, list(fields) if fields else self.schema.search_fields)[1]:
                    if t not in known and t not in out:
                        out.append(t)
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

    def facets_of(self, ids: Sequence[str], names: Sequence[str], size: int = 10,
                  filters: Sequence[Filter] = ()) -> dict[str, Any]:
        """Facets over exactly the documents `ids` (a pipeline's candidates); `filters` pick the level
        of hierarchy facets (see `_facet`)."""
        if not names:
            return {}
        keys = [int(k) for k in doc_keys(list(ids))] if ids else []
        query = tantivy.Query.term_set_query(self._tschema, KEY, keys) if keys else tantivy.Query.empty_query()
        return {name: self._facet(query, name, size, filters) for name in names}

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

    def _facet(self, query: tantivy.Query, name: str, size: int, filters: Sequence[Filter] = ()) -> dict[str, Any]:
        f = self.schema.field(name, kinds=("keyword", "number"))
        if f.kind == "number":
            stats = self._s.aggregate(query, {"s": {"stats": {"field": name}}})["s"]
            return {k: stats.get(k) for k in ("min", "max", "avg", "count")}
        if f.hierarchy:
            return self._level_facet(query, f, size, filters)
        res = self._s.aggregate(query, {"t": {"terms": {"field": name, "size": size}}})["t"]
        return {
            "buckets": [(b["key"], b["doc_count"]) for b in res["buckets"]],
            "distinct": (distinct := int(self._s.cardinality(query, name))),
            "approximate": distinct > EXACT_DISTINCT_LIMIT,
            "other": res.get("sum_other_doc_count", 0),
        }

    def _level_facet(self, query: tantivy.Query, f: Any, size: int, filters: Sequence[Filter]) -> dict[str, Any]:
        """One level of a hierarchy facet: the top level, or the children of the path a `FIELD=PATH`
        filter chose (a drill-down: filter on a bucket's key to get its children). Bucket keys are
        whole paths (`Toys > Games`); `parent` is the chosen path, `level` the depth shown (1 = top)."""
        chosen = [flt for flt in filters if flt.field == f.name and flt.op == "=" and len(flt.values) == 1]
        parent = canonical_path(chosen[-1].values[0], f.hierarchy) if chosen else ""
        joiner = PATH_JOINER  # no regex meta characters in it
        if parent:
            below = "(?i)" + _REGEX_META.sub(r"\\\1", parent) + joiner
            spec = {"include": below + ".*", "exclude": below + f".*{joiner}.*"}
        else:
            spec = {"exclude": f".*{joiner}.*"}
        res = self._s.aggregate(query, {"t": {"terms": {"field": f.name, "size": MAX_LEVEL_BUCKETS, **spec}}})["t"]
        buckets = [(b["key"], b["doc_count"]) for b in res["buckets"]]
        return {
            "buckets": buckets[:size],
            "distinct": len(buckets),
            "approximate": len(buckets) >= MAX_LEVEL_BUCKETS,
            "other": sum(c for _, c in buckets[size:]) + res.get("sum_other_doc_count", 0),
            "hierarchy": {"parent": parent or None, "level": parent.count(PATH_JOINER) + 2 if parent else 1,
                          "separator": PATH_JOINER.strip()},
        }

    def _highlights(self, source: dict, terms: set[str], fields: Sequence[str] | None) -> dict[str, str]:
        out = {}
        for name in fields or self.schema.search_fields:
            f = self.schema.fields[name]
            for src in f.copy_from or [name]:
                text = source.get(src)
                if isinstance(text, str) and src not in out:
                    snippet = highlight(text, terms, get_analyzer(self.schema.analyzer_of(f), self._user_dict))
                    if snippet:
                        out[src] = snippet
        return out


def _relaxed_words(text: str) -> str | None:
    """The plain words a relaxed `text_query` of `text` searches for (phrases and required words as free words),
    or None when it also excludes words."""
    parsed = parse_query(text)
    if parsed.excluded:
        return None
    return " ".join([parsed.free, *parsed.phrases, *parsed.required]) if parsed.has_operators else text


def _adjacent_pairs(tokens: Sequence[Any]) -> list[tuple[str, str]]:
    """Consecutive pairs of a query's longest tokens (search mode's sub-words left out; a word given whole and
    as parts, by its parts), distinct words."""
    longest: list[Any] = []
    for tok in sorted((t for t in tokens if not t.whole), key=lambda t: (t.start, -t.end)):
        if not longest or tok.start >= longest[-1].end:
            longest.append(tok)
    return list(dict.fromkeys((a.text, b.text) for a, b in zip(longest, longest[1:]) if a.text != b.text))


def _digest(path) -> str:
    try:
        return hashlib.sha1(path.read_bytes()).hexdigest()[:16]
    except FileNotFoundError:
        return "empty"
