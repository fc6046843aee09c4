"""The search façade: one object per open index that the CLI and the server call.

`Engine.open(path).search(query, pipeline=..., filters=..., facets=..., sort=..., k=..., offset=...,
explain=...)` plans the query, runs the pipeline, and turns the ranking into a page of hits with
stored fields, highlights, facets, a total, per-stage timings and (with `explain`) the plan and each
hit's per-stage scores. The engine keeps one snapshot searcher and its pipelines, and moves to a new
snapshot when a commit lands (or builds its pipelines again when a model was activated), so models load once
per process.
Misuse: building pipelines per request; ask the engine, which caches them per snapshot.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from souk.errors import QueryError, SoukError
from souk.index import Index
from souk.index.filters import Filter, parse_filters
from souk.index.searcher import MAX_QUERY_CHARS, SearchRequest, Searcher, _digest
from souk.index.store import meta_path
from souk.ranking.pipeline import Pipeline, build_pipeline
from souk.query.plan import QueryPlan
from souk.types import Explanation, SearchResult

log = logging.getLogger("souk.engine")

MAX_K = 1_000          # hits per page
MAX_DEPTH = 10_000     # offset + k: how deep a user may page
MAX_FACET_SIZE = 1_000
COLLAPSE_WINDOW = 4    # hits read per hit shown when collapsing
COLLAPSE_DEPTH = MAX_K // COLLAPSE_WINDOW  # collapsed hits a user may page through
ZERO_HIT_SUGGESTIONS = 5  # queries offered instead of a search that found nothing


class Engine:
    """An index opened for searching."""

    def __init__(self, index: Index):
        self.index = index
        self._lock = threading.Lock()
        self._searcher: Searcher | None = None
        self._pipelines: dict[str, Pipeline] = {}
        self._activation: dict[str, Any] = {}  # pipeline -> the models' activation it was built with
        self._write_lock = threading.Lock()
        self._build_lock = threading.Lock()  # pipelines are built one at a time, never under `_lock`
        self._refresher: threading.Thread | None = None
        self._suggests = False  # whether completions were asked for (then a commit rebuilds them too)
        self._seen: tuple[int, int, int] | None = None  # (inode, mtime, size) of the commit point last read
        self.events: Any = None  # the index's event log (souk.events.log.EventLog) once a search is recorded
        self.record_events = True  # every search logs an impression with a search_id (souk.events)

    @classmethod
    def open(cls, path: str | Path) -> "Engine":
        from souk.config import check_config

        index = Index.open(path)
        check_config(index.schema)
        return cls(index)

    def searcher(self) -> Searcher:
        """The snapshot of the newest commit (a new one once a commit has landed).

        A commit replaces tantivy's commit point atomically, so a `stat` tells whether one landed; the
        file is read and hashed only when it changed."""
        meta = meta_path(self.index.path)
        try:
            st = os.stat(meta)
            seen = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            seen = None
        with self._lock:
            if self._searcher is not None and seen is not None and seen == self._seen:
                return self._searcher
            current = _digest(meta)
            if self._searcher is None or self._searcher.commit_id != current:
                self._searcher = self.index.searcher()  # pipelines of the old one are rebuilt on first use
            self._seen = seen
            return self._searcher

    def pipeline(self, name: str) -> Pipeline:
        """Pipeline `name` over the current snapshot (built once per snapshot)."""
        searcher = self.searcher()
        from souk.models.store import activation  # lazy: a keyword search loads no model code

        models = activation(self.index.path)  # a model activated since (souk fit, souk models): built again
        pipe = self._pipelines.get(name)
        if pipe is not None and pipe.searcher is searcher and self._activation.get(name) == models:
            return pipe
        with self._build_lock:  # not `_lock`: `searcher()` and built pipelines stay free meanwhile
            pipe = self._pipelines.get(name)
            if pipe is None or pipe.searcher is not searcher or self._activation.get(name) != models:
                pipe = build_pipeline(name, searcher)
                searcher.warm()
                self._pipelines[name] = pipe
                self._activation[name] = models
            return pipe

    def rebuild(self) -> None:
        """Build the pipelines built so far again and swap them in (searches meanwhile keep the old ones): after
        something they read at build time changed, e.g. a model's paths were measured (`measure_in_background`)."""
        searcher = self.searcher()
        from souk.models.store import activation

        models = activation(self.index.path)
        with self._build_lock:
            for name in list(self._pipelines):
                self._pipelines[name] = build_pipeline(name, searcher)
                self._activation[name] = models
            searcher.warm()

    def measure_in_background(self) -> threading.Thread | None:
        """Where a cross-encoder the pipelines run was never measured on this machine (an index copied from
        another, a cleared cache, a pipeline cutting pairs to its own `max_length`: `unmeasured_crosses`), measure
        its paths on a background thread and then `rebuild`, so a long-running server moves from the unmeasured
        path to the fastest one without a search waiting; None when there is nothing to measure.
        Misuse: calling it from a one-shot CLI search (the thread would die with the process)."""
        from souk.models.cross_encoder import unmeasured_path
        from souk.ranking.rerank import measure_model, unmeasured_crosses

        todo = unmeasured_crosses(self.index.path, self.index.schema.pipelines)
        if not todo:
            return None

        def run() -> None:
            done = 0
            for model, max_length in todo:
                cut = f" at {max_length} tokens" if max_length else ""
                try:
                    verdict = measure_model(self.index.path, model, max_length)
                except Exception as e:  # a thread's failure must not pass silently, nor stop the server
                    log.warning("measuring the paths of cross-encoder %s%s failed (%s): it stays on %s", model.name,
                                cut, type(e).__name__, unmeasured_path(model))
                    continue
                done += 1
                log.info("cross-encoder %s%s measured on this machine: searches now take %s", model.name, cut,
                         verdict["backend"])
            if done:
                try:
                    self.rebuild()
                except Exception as e:  # (the pipelines built before stay)
                    log.warning("rebuilding the pipelines after measuring failed (%s)", type(e).__name__)

        thread = threading.Thread(target=run, name="souk-measure-cross", daemon=True)
        thread.start()
        return thread

    def is_lexical(self, name: str) -> bool:
        """True when pipeline `name` is already built for the current snapshot and is BM25 alone (a search
        costs about a millisecond: a server may run it without handing it to a thread)."""
        searcher = self.searcher()
        pipe = self._pipelines.get(name)
        return pipe is not None and pipe.searcher is searcher and pipe.lexical

    def available_pipelines(self) -> list[str]:
        """The pipelines that can run on this index now (vectors present, models fitted)."""
        from souk.errors import ModelError, SoukError
        from souk.ranking.pipeline import pipeline_names

        out = []
        self.off = {}  # pipeline -> a model that failed its checks, for the server's start-up log
        for name in pipeline_names(self.index.schema.pipelines):
            try:
                pipe = self.pipeline(name)
            except SoukError as e:
                if isinstance(e, ModelError):
                    self.off[name] = str(e)
                continue
            skipped = [n for n in pipe.notes if " skipped: " in n and "no fitted" not in n]
            if skipped:
                self.off[name] = "; ".join(skipped)
            out.append(name)
        return out

    def search(self, query: str = "", *, pipeline: str = "keyword", filters: Sequence[str | Filter] = (),
               facets: Sequence[str] = (), sort: str | None = None, k: int = 10, offset: int = 0,
               explain: bool = False, highlight: bool = True, facet_size: int = 10,
               collapse: str | None = None, session: str | None = None, record: bool = True,
               suggest_instead: bool = True) -> SearchResult:
        """One page of results; bad arguments raise QueryError naming the argument and its limit.

        `collapse` names a stored field: hits sharing its value (e.g. one title from one seller) are
        shown once, the first of them, with `collapsed` counting the others on the page's window.
        With `record` the search gets a `search_id` and its impression is logged (`record_search`); with
        `suggest_instead` a search finding nothing offers `suggestions` (off for warm-up searches)."""
        _check_request(query, k, offset, facet_size)
        searcher = self.searcher()
        pipe = self.pipeline(pipeline)  # built (models and caches loaded) once, outside the timing
        t0 = time.perf_counter()
        page = _Page(k, offset, sort, tuple(facets), facet_size, highlight, explain, collapse)
        page.check(searcher.schema)
        flt = [f if isinstance(f, Filter) else parse_filters([f], searcher.schema)[0] for f in filters]
        plan = pipe.plan(query, flt)
        result = self._page(searcher, pipe, plan, page)
        result.pipeline = pipeline
        result.offset = offset
        result.did_you_mean = plan.did_you_mean
        if suggest_instead and result.total == 0 and not offset and plan.text.strip() and not plan.did_you_mean:
            result.suggestions = self._instead(searcher, plan.text, pipe.match)
        result.searched = plan.text
        result.notes = list(plan.notes)
        if explain:
            result.plan = plan.to_dict()
        result.took_ms = (time.perf_counter() - t0) * 1e3
        return self.record_search(result, query, filters, sort, session) if record else result

    def record_search(self, result: SearchResult, query: str, filters: Sequence[Any] = (), sort: str | None = None,
                      session: str | None = None, **extra: Any) -> SearchResult:
        """Give `result` a search_id and log its impression in the index's event log (souk.events.record)."""
        from souk.events.record import record_search

        return record_search(self, result, query, filters, sort, session, extra)

    def _page(self, searcher: Searcher, pipe: Pipeline, plan: QueryPlan, page: "_Page") -> SearchResult:
        """The one step after planning: run the pipeline, then page, sort, count, facet and collapse.

        Collapsing reads a window of `COLLAPSE_WINDOW` hits per hit shown, widened until it holds the
        page's collapsed hits or every hit; only the hits shown are highlighted."""
        if page.collapse is None:
            return self._window(searcher, pipe, plan, page, page.offset, page.k, page.highlight)
        want = page.offset + page.k
        window = want * COLLAPSE_WINDOW
        while True:
            result = self._window(searcher, pipe, plan, page, 0, window, False)
            groups = _collapse(result.hits, page.collapse)
            if len(groups) >= want or len(result.hits) < window or window == MAX_K:
                break
            window = min(MAX_K, window * COLLAPSE_WINDOW)
        result.hits = groups[page.offset:want]
        if page.highlight:
            searcher.highlight(result.hits, result.terms)
        return result

    def _window(self, searcher: Searcher, pipe: Pipeline, plan: QueryPlan, page: "_Page", offset: int, k: int,
                highlight: bool) -> SearchResult:
        """Hits `offset .. offset + k` of the pipeline's ranking with the total and facets of the set they
        come from. A lexical pipeline (BM25 alone) runs inside the keyword index, which counts, sorts,
        facets and relaxes over every match in one pass (about a millisecond); other pipelines rank their
        candidates, which are then sorted, counted and faceted here."""
        expansions: list[Any] = [(e.text, e.weight, e.of) for e in plan.expansions]
        if pipe.lexical:
            result = searcher.search(SearchRequest(query=plan.text, k=k, offset=offset, filters=plan.filters,
                                                   facets=page.facets, facet_size=page.facet_size, sort=page.sort,
                                                   highlight=highlight, expansions=expansions,
                                                   boosts=plan.boost_filters, match=pipe.match))
            result.timings_ms = {"recall": result.took_ms}
            if page.explain:
                for i, hit in enumerate(result.hits):
                    hit.explain = {"recall": Explanation(hit.score, "recall", offset + i + 1).to_dict()}
            return result
        run = pipe.run(plan, k + offset)
        ranking = run.stages[-1].ranking  # every candidate, in the pipeline's order
        if list(pipe.recall_stage.retrievers) == ["bm25"]:  # lexical recall: count and facet every match
            counted = searcher.search(SearchRequest(query=plan.text, k=0, filters=plan.filters, facets=page.facets,
                                                    facet_size=page.facet_size, expansions=expansions,
                                                    match=pipe.match))
            total, facet_counts, dropped = counted.total, counted.facets, counted.dropped
        else:
            total, dropped = len(ranking), []
            facet_counts = searcher.facets_of(ranking.ids, page.facets, page.facet_size, plan.filters)
        if page.sort:
            values = searcher.numbers(ranking.ids, page.sort.lstrip("+-"))
            keyed = np.where(np.isnan(values), np.inf, -values if page.sort.startswith("-") else values)
            ranking = ranking.take(np.argsort(keyed, kind="stable"))
        shown = ranking.take(slice(offset, offset + k))
        hits = searcher.hits(shown, plan.text, highlight=highlight, expansions=expansions)
        if page.explain:
            for hit in hits:
                hit.explain = run.explain(hit.id)
        terms = searcher.text_query(plan.text, relaxed=True)[1] if plan.text.strip() else []
        return SearchResult(hits, total, terms, facet_counts, timings_ms=run.timings_ms, relaxed=bool(dropped),
                            dropped=dropped)

    def _instead(self, searcher: Searcher, text: str, match: str | None) -> list[str]:
        """Queries to offer when `text` matched nothing (never silent partial matches): completions of the
        query (pinyin, initials, one typo), else of each of its words, longest first; only those that find
        something, at most `ZERO_HIT_SUGGESTIONS`.
        Misuse: calling it for a query with hits (the suggestions are not a ranking)."""
        from souk.query.suggest import suggester_for

        try:
            suggester = suggester_for(searcher)
            words = sorted(dict.fromkeys(text.split()), key=len, reverse=True)
            out: list[str] = []
            for prefix in [text] + (words if len(words) > 1 else []):
                for s in suggester.suggest(prefix, ZERO_HIT_SUGGESTIONS * 2):
                    if s.text not in out and searcher.search(SearchRequest(query=s.text, k=0, match=match)).total:
                        out.append(s.text)
                    if len(out) >= ZERO_HIT_SUGGESTIONS:
                        return out
            return out
        except (SoukError, OSError):  # a query the suggester refuses, an unreadable cache: no suggestions
            return []

    def suggest(self, prefix: str, k: int = 8) -> list[dict[str, Any]]:
        """Completions for a typed prefix (titles, catalog entities, the query log), best first."""
        from souk.query.suggest import suggester_for

        self._suggests = True
        return [s.to_dict() for s in suggester_for(self.searcher()).suggest(prefix, k)]

    # ---- writes -------------------------------------------------------------------------------
    def write(self, records: Sequence[Any], on_error: str = "fail", delete: Sequence[str] = ()) -> dict[str, Any]:
        """Upsert records (dicts keyed by the schema's id field) and delete ids, in one commit.

        Returns once the commit is durable; the next search sees it. With `on_error="fail"` a bad
        record rejects the whole batch (DocumentError lists every problem) and nothing is written."""
        from souk.indexing import write_batch

        done = write_batch(self.index, records, on_error, delete, lock=self._write_lock, snapshot=self.searcher)
        self.refresh()
        return done

    def refresh(self) -> None:
        """Move to the newest commit in a background thread: rebuild the pipelines in use (query-side
        resources such as lexicons and suggesters rebuild in their own background threads, serving the
        previous commit's version until then), so no request waits for them."""
        with self._lock:
            if self._refresher is not None:
                return
            self._refresher = threading.Thread(target=self._refresh, name="souk-refresh-engine", daemon=True)
            self._refresher.start()

    def _refresh(self) -> None:
        from souk.errors import SoukError

        try:
            done = None
            while done != self.searcher().commit_id:  # again when another commit landed meanwhile
                done = self.searcher().commit_id
                for name in list(self._pipelines):
                    try:
                        self.pipeline(name)
                    except SoukError:
                        pass  # the next search of that pipeline reports it
                if self._suggests:
                    self.suggest("warm")
        except Exception:  # noqa: BLE001 - a background warm-up must never kill the process
            log.exception("refreshing pipelines after a commit failed")
        finally:
            with self._lock:
                self._refresher = None

    def refreshing(self) -> list[str]:
        """What is being rebuilt in the background now (pipelines, lexicon, suggester)."""
        from souk.query.refresh import builds_under_way

        return (["pipelines"] if self._refresher is not None else []) + builds_under_way()


@dataclass(frozen=True)
class _Page:
    """What a search shows of its ranking: which hits, in what order, with which counts."""

    k: int
    offset: int
    sort: str | None
    facets: tuple[str, ...]
    facet_size: int
    highlight: bool
    explain: bool
    collapse: str | None

    def check(self, schema: Any) -> None:
        """QueryError (collapse) or ConfigError (sort, facets) naming a field this index cannot use so."""
        if self.collapse is not None:
            if self.collapse not in schema.fields:
                raise QueryError(f"collapse: no field {self.collapse!r}; fields: {', '.join(schema.fields)}")
            if self.offset + self.k > COLLAPSE_DEPTH:
                raise QueryError(f"collapse: only the first {COLLAPSE_DEPTH} collapsed hits can be paged; "
                                 f"page * size is {self.offset + self.k}")
        if self.sort:
            schema.field(self.sort.lstrip("+-"), kinds=("number",))
        for name in self.facets:
            schema.field(name, kinds=("keyword", "number"))


def _collapse(hits: list, field: str) -> list:
    """The first hit of each value of `field` (compared normalized), counting the ones folded into it."""
    from souk.analysis.normalize import normalize

    first: dict[str, Any] = {}
    for hit in hits:
        value = hit.doc.get(field)
        key = (
            normalize(" ".join(map(str, value)) if isinstance(value, list) else str(value))
            if value not in (None, "")
            else f"\0{hit.id}"
        )
        if key in first:
            first[key].collapsed += 1
        else:
            hit.collapsed = 0
            first[key] = hit
    return list(first.values())


def _check_request(query: str, k: int, offset: int, facet_size: int) -> None:
    if not isinstance(query, str):
        raise QueryError("query: expected text")
    if len(query) > MAX_QUERY_CHARS:
        raise QueryError(f"query: {len(query)} characters is too long (max {MAX_QUERY_CHARS})")
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= MAX_K:
        raise QueryError(f"k: expected 0..{MAX_K} hits per page, got {k!r}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise QueryError(f"offset: expected a non-negative integer, got {offset!r}")
    if offset + k > MAX_DEPTH:
        raise QueryError(f"offset + k: at most {MAX_DEPTH} (pages deeper than that are not served), got {offset + k}")
    if isinstance(facet_size, bool) or not isinstance(facet_size, int) or not 1 <= facet_size <= MAX_FACET_SIZE:
        raise QueryError(f"facet_size: expected 1..{MAX_FACET_SIZE}, got {facet_size!r}")
