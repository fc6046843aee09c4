"""Property-based hostility (issue 8): random catalogs, schemas, filters and queries through the library
and the CLI never end in anything but a result or a one-line SoukError (CLI: exit 0, or exit 2 with an
`error:` line; never a traceback, never a signal), and filters, sort and pagination agree with a
brute-force Python reference on small random indexes.

Budget: the whole module runs in about a minute on 2 cores (`max_examples` below, no deadlines);
`SOUK_FUZZ_SCALE=20 pytest tests/test_hostile.py tests/serving` multiplies every budget for a deeper search.
`pytest --hypothesis-show-statistics tests/test_hostile.py` counts the cases run.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import tomllib

import pytest
from hypothesis import HealthCheck, assume, event, given, settings, strategies as st

from souk.analysis.normalize import normalize_keyword
from souk.catalogs import Record, read_catalog
from souk.errors import QueryError, SoukError
from souk.index import Index
from souk.index.filters import Filter, parse_filter
from souk.index.searcher import SearchRequest
from souk.schema import Schema, complete, infer, to_toml
from support import FUZZ_SCALE, REPO, SOUK, run_main

FAST = settings(max_examples=150 * FUZZ_SCALE, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
SLOW = settings(max_examples=40 * FUZZ_SCALE, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
CLI = settings(max_examples=4 * FUZZ_SCALE, deadline=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# ---- strategies ------------------------------------------------------------------------------------
nasty_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30) | st.sampled_from(
    ["", " ", "NaN", "nan", "inf", "-inf", "1e999", "-0", "0x10", "00123", "[]", "{}", '"', "\\", "\x00", "\u202e",
     "&amp;", "<mark>", "[bold]x", "蛋糕", "ＡＢＣ", "İ", "ß", "a" * 300])
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | nasty_text
)
json_values = st.recursive(json_scalars,
                           lambda kids: st.lists(kids, max_size=4) | st.dictionaries(nasty_text, kids, max_size=4),
                           max_leaves=12)
record_keys = st.sampled_from(["id", "_id", "sku", "code", "title", "a_b", "a", "price", "brand", "tags"]) | nasty_text
records = st.dictionaries(record_keys, json_values, max_size=6)


def _deep(n: int) -> str:
    return '{"id": "d", "x": ' + "[" * n + "]" * n + "}"


jsonl_lines = st.one_of(
    records.map(lambda r: json.dumps(r, allow_nan=True)),
    json_values.map(lambda v: json.dumps(v, allow_nan=True)),
    nasty_text,
    st.integers(1, 3000).map(_deep),
)


@st.composite
def catalog_files(draw) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["jsonl", "csv", "tsv", "json"]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "utf-16", "latin-1"]))
    if kind == "jsonl":
        text = "\n".join(draw(st.lists(jsonl_lines, max_size=8)))
    elif kind == "json":
        text = draw(st.one_of(st.lists(records, max_size=6).map(json.dumps), json_values.map(json.dumps),
                              st.integers(1, 5000).map(lambda n: "[" * n + "]" * n), nasty_text))
    else:
        sep = "," if kind == "csv" else "\t"
        cells = st.one_of(nasty_text, st.sampled_from(["id", "id", "title", "1", "2.5", '"quoted, cell"', "a\nb"]))
        rows = draw(st.lists(st.lists(cells, min_size=1, max_size=4), max_size=6))
        text = "\n".join(sep.join(r) for r in rows)
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:
        data = text.encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        data += draw(st.binary(max_size=12))
    return kind, data


def _check_records(recs: list[Record]) -> None:
    for r in recs:
        assert isinstance(r.line, int) and r.line >= 1
        assert (r.data is None) != (r.error is None)
        assert r.data is None or isinstance(r.data, dict)
        assert r.error is None or (isinstance(r.error, str) and "\n" not in r.error)


# ---- catalogs and schemas through the library --------------------------------------------------------
@FAST
@given(catalog_files())
def test_catalog_readers_and_inference_never_crash(tmp_path, catalog):
    kind, data = catalog
    path = tmp_path / f"c.{kind}"
    path.write_bytes(data)
    try:
        recs = list(read_catalog(path))
    except SoukError as e:
        assert "\n" not in str(e)
        return
    _check_records(recs)
    sample = [r.data for r in recs if r.data is not None]
    try:
        inference = infer(sample)
    except SoukError as e:  # no id, nothing readable, too many fields: never a schema it made itself refuses
        assert "inferred schema" not in str(e) and "\n" not in str(e), e
        return
    schema = inference.schema
    assert Schema.from_dict(tomllib.loads(to_toml(schema, inference.notes))).to_dict() == schema.to_dict()
    for rec in sample:
        values, problems = schema.extract(rec)
        assert (values is None) != (not problems)


field_specs = st.dictionaries(
    st.sampled_from(["kind", "from", "analyzer", "boost", "reduce", "copy_from", "stored", "params"]) | nasty_text,
    st.sampled_from(["text", "keyword", "number", "stored", "standard", "min", "sum", "title", "a.b",
                     "x[].y"]) | json_values,
    max_size=5)
schema_tables = st.fixed_dictionaries(
    {},
    optional={
        "id": st.sampled_from(["sku", "title", "_id"]) | json_values,
        "fields": st.dictionaries(
            st.sampled_from(["sku", "title", "price", "_id", "__x", "9a"]) | nasty_text, field_specs, max_size=4
        )
        | json_values,
        "search": st.fixed_dictionaries(
            {}, optional={"fields": st.lists(st.sampled_from(["title", "sku"]) | nasty_text)}
        )
        | json_values,
        "analysis": st.dictionaries(nasty_text, json_values, max_size=2) | json_values,
        "pipelines": st.dictionaries(
            nasty_text, st.dictionaries(nasty_text, json_values, max_size=2) | json_values, max_size=2
        ),
        "catalog": st.fixed_dictionaries({}, optional={"columns": json_values}) | json_values,
    },
) | st.dictionaries(nasty_text, json_values, max_size=3)


@pytest.mark.slow
@FAST
@given(schema_tables, st.lists(records, max_size=4))
def test_schemas_are_valid_or_one_line_config_errors(table, sample):
    assume("vector" not in json.dumps(table, default=str))  # vector params are checked by souk.index.vectors
    try:
        schema = Schema.from_dict(table, origin="s.toml")
    except SoukError as e:
        assert "\n" not in str(e)
    else:
        assert Schema.from_dict(tomllib.loads(to_toml(schema))).to_dict() == schema.to_dict()
        for rec in sample:
            schema.extract(rec)
    try:
        complete(table, sample, origin="s.toml")
    except SoukError as e:
        assert "\n" not in str(e)


# ---- filters and queries against a fixed index -------------------------------------------------------
SCHEMA = Schema.from_dict({"id": "sku", "fields": {
    "sku": {"kind": "keyword"}, "title": {"kind": "text"}, "brand": {"kind": "keyword"},
    "tags": {"kind": "keyword"}, "price": {"kind": "number"}, "rank": {"kind": "number"}}})
BRANDS = ["Acme", "acme", "ACME", "Émile", "émile", "b-1", "x.y", "Zed (Z)", "a|b", " padded ", "Straße"]
WORDS = ["red", "shoe", "milk", "tea", "蛋糕", "phone", "case"]


@st.composite
def catalog_rows(draw, max_size=25):
    n = draw(st.integers(8, max_size) | st.integers(0, max_size))
    rows = []
    for i in range(n):
        row = {"sku": f"s{i}", "rank": draw(st.integers(-3, 3)) / 2,
               "title": " ".join(draw(st.lists(st.sampled_from(WORDS), max_size=4)))}
        if draw(st.integers(0, 4)):
            row["price"] = draw(st.sampled_from([0.0, -0.0, 1, 2.5, 10, 1e300, -1e300, 5e-324, 3, 3.0]))
        if draw(st.integers(0, 4)):
            row["brand"] = draw(st.sampled_from(BRANDS))
        if draw(st.booleans()):
            row["tags"] = draw(st.lists(st.sampled_from(BRANDS), max_size=3))
        rows.append(row)
    return rows


def build(path, rows) -> Index:
    index = Index.create(path, SCHEMA)
    with index.writer() as w:
        w.add([Record(i + 1, r) for i, r in enumerate(rows)])
        w.commit()
    return index


@pytest.fixture(scope="module")
def fixed(tmp_path_factory):
    rows = [{"sku": f"s{i}", "title": " ".join(WORDS[j % len(WORDS)] for j in range(i, i + 3)), "rank": (i % 5) / 2,
             "price": [0.0, -0.0, 1, 2.5, 10, 1e300, 3][i % 7], "brand": BRANDS[i % len(BRANDS)],
             "tags": BRANDS[i % 3: i % 3 + 2]} for i in range(40)]
    index = build(tmp_path_factory.mktemp("hostile") / "ix", rows)
    return index, rows, index.searcher()


numbers = st.one_of(st.sampled_from(["0", "-0", "1", "2.5", "10", "1e300", "-1e300", "3", "1e999", "nan", "-inf",
                                     "5e-324", "abc", ""]),
                    st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers(-(10**30), 10**30).map(str))
filter_values = st.one_of(numbers, st.sampled_from(BRANDS + [b.upper() for b in BRANDS] + [b.lower() for b in BRANDS]),
                          nasty_text)


@st.composite
def filter_exprs(draw) -> str:
    name = draw(st.sampled_from(["price", "rank", "brand", "tags", "title", "sku", "prce", "Brand",
                                 "energy-kcal"]) | nasty_text)
    op = draw(st.sampled_from(["=", "!=", "<", "<=", ">", ">="]) | nasty_text)
    if draw(st.booleans()):
        value = draw(filter_values)
    elif draw(st.booleans()):
        value = f"{draw(numbers)}..{draw(numbers)}"
    else:
        value = "|".join(draw(st.lists(filter_values, min_size=1, max_size=3)))
    return f"{name}{op}{value}"


good_numbers = st.sampled_from(["0", "-0", "1", "2.5", "10", "1e300", "-1e300", "3", "5e-324", "-1", "0.5", "1.5", "2"])


@st.composite
def good_filter_exprs(draw) -> str:
    """Well-formed filters on the filterable fields (values of the data in other cases, ranges, alternatives)."""
    name = draw(st.sampled_from(["price", "rank", "brand", "tags"]))
    if name in ("brand", "tags"):
        op = draw(st.sampled_from(["=", "!="]))
        variants = st.sampled_from(BRANDS).flatmap(lambda b: st.sampled_from([b, b.upper(), b.lower(), b.strip()]))
        return f"{name}{op}" + "|".join(draw(st.lists(variants, min_size=1, max_size=3)))  # "a|b" is two values
    op = draw(st.sampled_from(["=", "!=", "<", "<=", ">", ">="]))
    if op in ("=", "!=") and draw(st.booleans()):
        lo, hi = sorted([draw(good_numbers), draw(good_numbers)], key=float)
        return f"{name}{op}{draw(st.sampled_from([lo, '']))}..{hi}"
    return f"{name}{op}{draw(good_numbers)}"


def _matches(flt: Filter, row: dict) -> bool:
    """The reference meaning of one filter on one record (as souk indexes the record)."""
    kind = SCHEMA.fields[flt.field].kind
    if kind == "keyword":
        raw = row.get(flt.field)
        have = [normalize_keyword(v) for v in ([raw] if isinstance(raw, str) else raw or [])]
        want = [normalize_keyword(v) for v in flt.values]
        hit = any(h == w or h.lower() == w.lower() for h in have if h for w in want)
        return not hit if flt.op == "!=" else hit
    value = row.get(flt.field)
    if value is None:
        return flt.op == "!="
    value = float(value) + 0.0

    def one(v: str) -> bool:
        if flt.op in ("=", "!="):
            if ".." in v:
                lo, hi = v.split("..", 1)
                return (not lo or value >= float(lo) + 0.0) and (not hi or value <= float(hi) + 0.0)
            return value == float(v) + 0.0
        bound = float(v) + 0.0
        return {"<": value < bound, "<=": value <= bound, ">": value > bound, ">=": value >= bound}[flt.op]

    hit = any(one(v) for v in flt.values)
    return not hit if flt.op == "!=" else hit


def _reference_ids(rows, filters):
    return {r["sku"] for r in rows if all(_matches(f, r) for f in filters)}


@FAST
@given(
    st.lists(filter_exprs(), max_size=2)
    | st.lists(good_filter_exprs(), max_size=2)
    | st.lists(good_filter_exprs(), max_size=2)
)
def test_filters_parse_or_fail_cleanly_and_match_the_reference(fixed, exprs):
    index, rows, searcher = fixed
    filters = []
    for expr in exprs:
        try:
            filters.append(parse_filter(expr, SCHEMA))
        except QueryError as e:
            assert "\n" not in str(e)
            return
    res = searcher.search(SearchRequest("", k=len(rows), filters=filters))
    expected = _reference_ids(rows, filters)
    event(f"{len(filters)} filter(s), {'some' if expected else 'no'} documents expected")
    assert res.total == len(expected)
    assert {h.id for h in res.hits} == expected


queries = st.one_of(nasty_text, st.lists(st.sampled_from(WORDS + ['"', "+", "-", '"red shoe"', "+milk", "-tea", "usb-c",
                                                                  "AND", "*", "~"]),
                                         max_size=6).map(" ".join), st.text(max_size=1000))


@FAST
@given(queries, st.integers(0, 50), st.integers(0, 50),
       st.sampled_from([None, "rank", "-rank", "price", "title", "nope", "-", ""]))
def test_queries_return_results_or_query_errors(fixed, query, k, offset, sort):
    index, rows, searcher = fixed
    try:
        res = searcher.search(SearchRequest(query, k=k, offset=offset, sort=sort or None, facets=["brand", "price"]))
    except QueryError as e:
        assert "\n" not in str(e)
        return
    except SoukError as e:  # an unknown sort field is a ConfigError naming the field
        assert "\n" not in str(e) and sort in ("title", "nope", "-")
        return
    assert len(res.hits) <= k and 0 <= res.total <= len(rows)
    assert all(math.isfinite(h.score) for h in res.hits) or sort == "price"


# ---- filter + sort + pagination on small random indexes ----------------------------------------------
@pytest.mark.slow
@SLOW
@given(catalog_rows(), st.lists(good_filter_exprs(), max_size=1) | st.lists(good_filter_exprs(), max_size=2),
       st.sampled_from([None, "rank", "-rank"]), st.integers(1, 30) | st.integers(0, 8),
       st.integers(0, 6) | st.integers(0, 20))
def test_filter_sort_and_pages_match_brute_force(tmp_path_factory, rows, exprs, sort, k, offset):
    filters = []
    for expr in exprs:
        try:
            filters.append(parse_filter(expr, SCHEMA))
        except QueryError:
            pass
    index = build(tmp_path_factory.mktemp("random") / "ix", rows)
    res = index.searcher().search(SearchRequest("", k=k, offset=offset, filters=filters, sort=sort))
    expected = [r for r in rows if all(_matches(f, r) for f in filters)]
    event(f"{len(filters)} filter(s), {'a page of hits' if expected[offset: offset + k] else 'an empty page'}")
    assert res.total == len(expected)
    if sort:  # rank is never missing; ties keep the order of addition
        expected.sort(key=lambda r: -r["rank"] if sort.startswith("-") else r["rank"])
    page = expected[offset: offset + k]
    assert [h.id for h in res.hits] == [r["sku"] for r in page]


def test_sort_on_a_field_some_documents_lack(tmp_path):
    index = build(tmp_path / "ix", [{"sku": "a", "rank": 1, "price": 3}, {"sku": "b", "rank": 2}])
    res = index.searcher().search(SearchRequest("", k=5, sort="price"))
    assert [h.id for h in res.hits] == ["a", "b"]


# ---- the real CLI ------------------------------------------------------------------------------------
def _assert_clean(code: int, stderr: str) -> None:
    assert code in (0, 2), (code, stderr[-2000:])
    assert "Traceback" not in stderr, stderr[-2000:]
    if code == 2:  # the failure is said as `error: ...` (a rejected batch lists its records on the lines after it)
        assert any(line.startswith("error: ") for line in stderr.strip().splitlines()), stderr[-2000:]


search_args = st.lists(st.one_of(
    st.tuples(st.just("--filter"), filter_exprs()),
    st.tuples(st.just("--facet"), st.sampled_from(["brand", "price", "title", "x"]) | nasty_text),
    st.tuples(st.just("--sort"), st.sampled_from(["rank", "-price", "title", "zz"]) | nasty_text),
    st.tuples(st.just("-k"), st.integers(-5, 50).map(str) | nasty_text),
    st.tuples(st.just("--offset"), st.integers(-5, 50).map(str)),
    st.tuples(st.just("--pipeline"), st.sampled_from(["keyword", "bm25", "nope"])), st.tuples(st.just("--json")),
), max_size=4).map(lambda groups: [a for g in groups for a in g])


@pytest.mark.slow
@FAST
@given(queries, search_args)
def test_cli_search_in_process(fixed, query, args):
    index = fixed[0]
    proc = run_main("search", "--index", str(index.path), *args, "--", query, check=False)
    _assert_clean(proc.returncode, proc.stderr)
    if "--json" in args:
        last = json.loads(proc.stdout.strip().splitlines()[-1])
        assert ("error" in last) == (proc.returncode == 2)


@pytest.mark.slow
@CLI
@given(catalog_files(), st.sampled_from([[], ["--on-error", "skip"], ["--commit-every", "2"], ["--columns", "a,b"]]))
def test_cli_index_in_a_subprocess(tmp_path_factory, catalog, extra):
    kind, data = catalog
    work = tmp_path_factory.mktemp("cli")
    (work / f"c.{kind}").write_bytes(data)
    proc = subprocess.run([*SOUK, "index", str(work / f"c.{kind}"), "--index", str(work / "ix"), "--json", *extra],
                          capture_output=True, text=True, timeout=120, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    _assert_clean(proc.returncode, proc.stderr)
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    if proc.returncode == 2:
        assert set(last) >= {"error", "kind"}
        assert not (work / "ix").exists() or Index.open(work / "ix").searcher().num_docs > 0  # nothing left behind
    else:
        assert last["docs"] == Index.open(work / "ix").searcher().num_docs


@pytest.mark.slow
@CLI
@given(queries, search_args)
def test_cli_search_in_a_subprocess(fixed, query, args):
    # an OS argv cannot hold NUL (in-process test covers it)
    assume("\x00" not in query and all("\x00" not in a for a in args))
    index = fixed[0]
    proc = subprocess.run([*SOUK, "search", "--index", str(index.path), *args, "--", query], capture_output=True,
                          text=True, timeout=120, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    _assert_clean(proc.returncode, proc.stderr)
