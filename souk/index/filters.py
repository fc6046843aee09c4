"""Filter expressions (`brand=Garden`, `price<20`, `price=5..20`, `brand!=Acme`) and their tantivy queries."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import tantivy

from souk.analysis.normalize import normalize_keyword
from souk.errors import QueryError
from souk.schema import Schema

_EXPR = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|!=|=|<|>)\s*(.*?)\s*$", re.S)


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
        raise QueryError(f"cannot parse filter {expr!r}; write FIELD=VALUE, FIELD!=VALUE, FIELD<N, FIELD>=N or FIELD=A..B")
    name, op, raw = m.groups()
    field = schema.fields.get(name)
    if field is None or field.kind not in ("keyword", "number"):
        filterable = [f.name for f in schema.fields.values() if f.kind in ("keyword", "number")]
        raise QueryError(f"filter {expr!r}: no filterable field {name!r}; filterable: {', '.join(filterable) or '(none)'}")
    values = tuple(v.strip() for v in raw.split("|")) if op in ("=", "!=") else (raw,)
    if field.kind == "keyword" and op not in ("=", "!="):
        raise QueryError(f"filter {expr!r}: {name} is a keyword field; use = or !=")
    if field.kind == "number":
        for v in values:
            for part in v.split("..") if op in ("=", "!=") else [v]:
                try:
                    float(part)
                except ValueError:
                    raise QueryError(f"filter {expr!r}: {part!r} is not a number") from None
    return Filter(name, op, values)


def parse_filters(exprs: Sequence[str] | None, schema: Schema) -> list[Filter]:
    return [parse_filter(e, schema) for e in exprs or []]


def filter_query(flt: Filter, schema: Schema, tschema: tantivy.Schema) -> tuple[tantivy.Occur, tantivy.Query]:
    """The clause (Must or MustNot) and tantivy query that implement one filter."""
    kind = schema.fields[flt.field].kind
    occur = tantivy.Occur.MustNot if flt.op == "!=" else tantivy.Occur.Must
    if kind == "keyword":
        values = [normalize_keyword(v) for v in flt.values]
        return occur, tantivy.Query.term_set_query(tschema, flt.field, values)
    clauses = [(tantivy.Occur.Should, _number_query(flt.field, flt.op, v, tschema)) for v in flt.values]
    return occur, clauses[0][1] if len(clauses) == 1 else tantivy.Query.boolean_query(clauses)


def _number_query(name: str, op: str, value: str, tschema: tantivy.Schema) -> tantivy.Query:
    def rng(lo: float | None, hi: float | None, inc_lo: bool = True, inc_hi: bool = True) -> tantivy.Query:
        return tantivy.Query.range_query(tschema, name, tantivy.FieldType.Float, lo, hi, inc_lo, inc_hi)

    if op in ("=", "!="):
        if ".." in value:
            lo, hi = value.split("..", 1)
            return rng(float(lo) if lo else None, float(hi) if hi else None)
        return rng(float(value), float(value))
    v = float(value)
    return {
        "<": lambda: rng(None, v, True, False),
        "<=": lambda: rng(None, v),
        ">": lambda: rng(v, None, False, True),
        ">=": lambda: rng(v, None),
    }[op]()


def combine(query: tantivy.Query | None, filters: Sequence[Filter], schema: Schema, tschema: tantivy.Schema) -> tantivy.Query:
    """`query` restricted by all filters (which add nothing to scores); no query means every document."""
    base = query if query is not None else tantivy.Query.all_query()
    if not filters:
        return base
    clauses = [(occ, tantivy.Query.const_score_query(q, 0.0)) for occ, q in (filter_query(f, schema, tschema) for f in filters)]
    return tantivy.Query.boolean_query([(tantivy.Occur.Must, base), *clauses])
