"""A fast path for the most common command, `souk search`, that skips building the whole typer app.

typer validates every option through pydantic (0.2-0.3 s of imports and adapters per process on 2 shared cores,
more than the search itself) and `souk.cli.main` imports every command module. A plain `souk search` command
line is parsed here with argparse into the same arguments and runs the same code as the typer command
(`souk.cli.catalog.run_search`); anything this parser does not accept exactly (help, a bad number, an option
it does not know, a value starting with `-`) goes to typer, so messages and help stay typer's.
"""
from __future__ import annotations

import argparse
from pathlib import Path


class _Refused(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # noqa: D401 - argparse hook
        raise _Refused(message)

    def exit(self, status=0, message=None):
        raise _Refused(message or "")


def _parser() -> _Parser:
    p = _Parser(prog="souk search", add_help=False, allow_abbrev=False)
    p.add_argument("query", nargs="?", default="")
    p.add_argument("--index", required=True)
    p.add_argument("--filter", dest="filters", action="append", default=[])
    p.add_argument("--facet", dest="facets", action="append", default=[])
    p.add_argument("-k", "--k", dest="k", type=int, default=10)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--sort", default=None)
    p.add_argument("--pipeline", default="keyword")
    p.add_argument("--explain", action="store_true")
    p.add_argument("--json", dest="as_json", action="store_true")
    return p


def parse_search(argv: list[str]) -> dict | None:
    """The arguments of a `souk search ...` command line (argv without the program), or None when typer
    should parse it (not a search, help asked for, or anything unusual)."""
    if not argv or argv[0] != "search" or any(a in ("--help", "-h") for a in argv[1:]):
        return None
    try:
        args = _parser().parse_args(argv[1:])
    except (_Refused, ValueError, TypeError):
        return None
    return {"query": args.query, "index": Path(args.index), "filters": args.filters, "facets": args.facets,
            "k": args.k, "offset": args.offset, "sort": args.sort, "pipeline": args.pipeline,
            "explain": args.explain, "as_json": args.as_json}


def run_search(query: str, index: Path, filters: list[str], facets: list[str], k: int, offset: int,
               sort: str | None, pipeline: str, explain: bool, as_json: bool) -> None:
    """`souk search`: one page of results as JSON (one line) or as a table. Loading the index, its models
    and caches is timed apart (`load_ms`: the same query run once first, unlogged, so that it loads exactly what
    this query needs, e.g. jieba only for Chinese text): `took_ms` is the search alone."""
    import time

    from souk.cli.output import emit_json
    from souk.engine import Engine
    from souk.query.spell import tables_on_first_use

    tables_on_first_use()  # one query: the speller reads its bigrams and builds its tables only if it needs them

    started = time.perf_counter()
    engine = Engine.open(index)
    # models, dictionaries, caches: what this query needs ("warm up" would load a speller's whole model)
    engine.search(query, pipeline=pipeline, k=1, highlight=False, record=False, suggest_instead=False)
    load_ms = (time.perf_counter() - started) * 1e3
    result = engine.search(query, pipeline=pipeline, filters=filters, facets=facets, sort=sort,
                           k=k, offset=offset, explain=explain)
    if as_json:
        emit_json({**result.to_dict(), "load_ms": round(load_ms, 3)})
        return
    from souk.cli.catalog import _print_explain, _print_result

    _print_result(result, engine.index.schema, sort, load_ms)
    if explain and result.plan:
        _print_explain(result)
