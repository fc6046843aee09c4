"""Filter expressions (`brand=Garden`, `price<20`, `price=5..20`, `brand!=Acme`) and their tantivy queries.

Keyword values match regardless of case (`grade=A` finds `a`), after the NFKC normalization keyword
fields get at index time. Numbers must be finite; an unknown field is named with the close ones.
Misuse: building tantivy term queries for keyword filters yourself (they would be case-sensitive).
"""
from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import tantivy

from souk.analysis.normalize import normalize_keyword
from souk.analysis.values import canonical_path
from souk.errors import QueryError
from souk.limits import MAX_TERM_BYTES
from souk.schema import Schema

_EXPR = re.compile(r"^\s*([^<>=!]+?)\s*(<=|>=|!=|=|<|>)\s*(.*?)\s*$", re.S)
_REGEX_META = re.compile(r"([\\.+*?()|\[\]{}^$#&\-~])")
MAX_CASELESS_CHARS = 200  # longer keyword values match exactly (tantivy's regex automaton has 1000 states)


@dataclass(frozen=True)
class Filter:
    """`field op value`; for `=`/`!=` on keywords `values` may hold alternatives (`a|b`)."""

    field: str
    op: str
    values: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.field}{self.op}{'|'.join(self.values)}"


def parse_filter(expr: str, schema: Schema) -> Filter:
    """Parse and check one filter expression against the schema."""
    m = _EXPR.match(expr)
    if not m or not m.group(3):
        raise QueryError(f"cannot parse filter {expr!r:.80}; write FIELD=VALUE, FIELD!=VALUE, FIELD<N, "
                         "FIELD>=N or FIELD=A..B")
    name, op, raw = m.groups()
    field = schema.fields.get(name)
    filterable = [f.name for f in schema.fields.values() if f.kind in ("keyword", "number")]
    if field is None:
        close = difflib.get_close_matches(name, filterable, n=3, cutoff=0.6)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise QueryError(f"filter {expr!r:.80}: no filterable field {name!r:.40}{hint}; "
                         f"filterable: {', '.join(filterable) or '(none)'}")
    if field.kind not in ("keyword", "number"):
        raise QueryError(f"filter {expr!r:.80}: no filterable field {name!r}: it is a {field.kind} field; "
                         f"filterable: {', '.join(filterable) or '(none)'}")
    values = tuple(v.strip() for v in raw.split("|")) if op in ("=", "!=") else (raw,)
    if field.kind == "keyword":
        if op not in ("=", "!="):
            raise QueryError(f"filter {expr!r:.80}: {name} is a keyword field; use = or !=")
        for v in values:
            if not v:
                raise QueryError(f"filter {expr!r:.80}: empty value; write {name}=A or {name}=A|B")
            if len(v.encode("utf-8", "surrogatepass")) > MAX_TERM_BYTES:
                raise QueryError(f"filter {expr!r:.40}...: value longer than the term limit of {MAX_TERM_BYTES} bytes")
    else:
        for v in values:
            _check_number_value(expr, v, ranges=op in ("=", "!="))
    return Filter(name, op, values)


def _check_number_value(expr: str, value: str, ranges: bool) -> None:
    parts = value.split("..", 1) if ranges and ".." in value else [value]
    bounds = [_finite(expr, p) for p in parts if p or len(parts) == 1]
    if len(parts) == 2:
        if not bounds:
            raise QueryError(f"filter {expr!r:.80}: the range {value!r} needs at least one bound (5.., ..20 or 5..20)")
        if len(bounds) == 2 and bounds[0] > bounds[1]:
            raise QueryError(f"filter {expr!r:.80}: the range {value!r} is empty (its low end is above its high end)")


def _finite(expr: str, part: str) -> float:
    try:
        num = float(part)
    except ValueError:
        raise QueryError(f"filter {expr!r:.80}: {part!r:.40} is not a number") from None
    if not math.isfinite(num):
        raise QueryError(f"filter {expr!r:.80}: {part!r:.40} is not a finite number")
    return num


def parse_filters(exprs: Sequence[str] | None, schema: Schema) -> list[Filter]:
    return [parse_filter(e, schema) for e in exprs or []]


def filter_query(flt: Filter, schema: Schema, tschema: tantivy.Schema) -> tuple[tantivy.Occur, tantivy.Query]:
    """The clause (Must or MustNot) and tantivy query that implement one filter."""
    kind = schema.fields[flt.field].kind
    occur = tantivy.Occur.MustNot if flt.op == "!=" else tantivy.Occur.Must
    if kind == "keyword":
        sep = schema.fields[flt.field].hierarchy
        values = [normalize_keyword(canonical_path(v, sep) if sep else v) for v in flt.values]
        return occur, _keyword_query(flt.field, values, tschema)
    clauses = [(tantivy.Occur.Should, _number_query(flt.field, flt.op, v, tschema)) for v in flt.values]
    return occur, clauses[0][1] if len(clauses) == 1 else tantivy.Query.boolean_query(clauses)


def _keyword_query(name: str, values: list[str], tschema: tantivy.Schema) -> tantivy.Query:
    """Terms equal to one of `values` up to case: the exact terms, or'ed with a case-insensitive
    regex for each value that has cased letters and is short enough for tantivy's regex automaton."""
    exact = tantivy.Query.term_set_query(tschema, name, values)
    caseless = []
    for v in values:
        if v.lower() != v.upper() and len(v) <= MAX_CASELESS_CHARS:
            try:
                caseless.append(tantivy.Query.regex_query(tschema, name, "(?i)" + _REGEX_META.sub(r"\\\1", v)))
            except ValueError:
                pass  # over the automaton's size: the exact term still matches
    if not caseless:
        return exact
    return tantivy.Query.boolean_query([(tantivy.Occur.Should, q) for q in [exact, *caseless]])


def _number_query(name: str, op: str, value: str, tschema: tantivy.Schema) -> tantivy.Query:
    def rng(lo: float | None, hi: float | None, inc_lo: bool = True, inc_hi: bool = True) -> tantivy.Query:
        return tantivy.Query.range_query(tschema, name, tantivy.FieldType.Float, lo, hi, inc_lo, inc_hi)

    if op in ("=", "!="):
        if ".." in value:
            lo, hi = value.split("..", 1)
            return rng(_num(lo) if lo else None, _num(hi) if hi else None)
        return rng(_num(value), _num(value))
    v = _num(value)
    return {
        "<": lambda: rng(None, v, True, False),
        "<=": lambda: rng(None, v),
        ">": lambda: rng(v, None, False, True),
        ">=": lambda: rng(v, None),
    }[op]()


def _num(text: str) -> float:
    """A filter bound as indexed numbers are: -0.0 is 0.0 (tantivy orders -0.0 below 0.0)."""
    return float(text) + 0.0


def combine(query: tantivy.Query | None, filters: Sequence[Filter], schema: Schema,
            tschema: tantivy.Schema) -> tantivy.Query:
    """`query` restricted by all filters (which add nothing to scores); no query means every document."""
    base = query if query is not None else tantivy.Query.all_query()
    if not filters:
        return base
    clauses = [(occ, tantivy.Query.const_score_query(q, 0.0))
               for occ, q in (filter_query(f, schema, tschema) for f in filters)]
    return tantivy.Query.boolean_query([(tantivy.Occur.Must, base), *clauses])


class Filters:
    """The filters a vector search receives: `items`, the structured `Filter`s (an engine that evaluates
    filters itself, e.g. Milvus, pushes them down), and `keys()`, the sorted keys of the documents they allow,
    computed on first use (what FAISS restricts by). `items` is None when only the keys are known.
    Misuse: calling `keys()` in a backend that can push `items` down (it runs a keyword search)."""

    def __init__(self, items: Sequence[Filter] | None, keys: Callable[[], np.ndarray]):
        self.items = None if items is None else tuple(items)
        self._compute = keys
        self._keys: np.ndarray | None = None

    @classmethod
    def of(cls, searcher: Any, items: Sequence[Filter]) -> "Filters":
        """A plan's filters over a snapshot searcher (keys from `searcher.filter_keys`)."""
        return cls(items, lambda: searcher.filter_keys(items))

    @classmethod
    def of_keys(cls, keys: Sequence[int] | np.ndarray) -> "Filters":
        """Only these keys allowed (no structured form)."""
        return cls(None, lambda: np.asarray(keys, dtype=np.int64))

    def keys(self) -> np.ndarray:
        """Sorted unique int64 keys of the allowed documents."""
        if self._keys is None:
            self._keys = np.unique(np.asarray(self._compute(), dtype=np.int64))
        return self._keys

    def within(self, present: np.ndarray) -> "Filters":
        """The same filters with `keys()` limited to `present` (sorted keys a vector set holds), still lazy."""
        return Filters(self.items, lambda: np.intersect1d(self.keys(), present))
