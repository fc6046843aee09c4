"""Commands over one index: `index`, `search`, `stats`, `delete`."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from souk.catalogs import estimate_records
from souk.cli.output import console, emit_json, err_console, facet_line, plain_text, progress_bar
from souk.errors import ConfigError
from souk.indexing import INFER_SAMPLE, check_commit_every, check_on_error, index_records, open_index, open_or_create
from souk.schema import Schema
from souk.serving.display import format_value

__all__ = ["INFER_SAMPLE", "parse_columns", "register"]


def parse_columns(text: str | None) -> list[str] | None:
    """`--columns a,b,c` as a list of names."""
    if text is None:
        return None
    names = [c.strip() for c in text.split(",")]
    if not all(names):
        raise ConfigError(f"--columns {text!r}: expected names separated by commas, such as id,title,price")
    return names


def _prepare_search(index: Path) -> float:
    """Build the newest commit's spelling lexicon now (seconds on large catalogs), which the first search would
    otherwise build: a `souk search` right after `souk index` answers in its usual time. Seconds taken."""
    t0 = time.perf_counter()
    searcher = open_index(index).searcher()
    from souk.query.understand import query_steps

    if "spell" in query_steps(searcher.schema.query)[0]:
        from souk.query.lexicon import load_lexicon

        load_lexicon(searcher, progress=True)
    return time.perf_counter() - t0


def register(app: typer.Typer) -> None:
    @app.command("index")
    def index_cmd(
        data: Path = typer.Argument(..., help="Catalog: .jsonl, .json, .csv, .tsv or a BEIR directory."),
        index: Path = typer.Option(..., "--index", help="Index directory (created, or added to/updated)."),
        schema: Optional[Path] = typer.Option(None, "--schema",
                                              help="Schema TOML; inferred when absent (or when it has no [fields])."),
        columns: Optional[str] = typer.Option(None, "--columns",
                                              help="Names of the columns of a CSV/TSV without a header row: a,b,c."),
        on_error: str = typer.Option("fail", "--on-error",
                                     help="fail: commit nothing from a bad batch; skip: commit the rest."),
        commit_every: int = typer.Option(0, "--commit-every",
                                         help="Commit after every N records (0: once at the end)."),
        vectors: bool = typer.Option(False, "--vectors",
                                     help="Add a dense vector field 'embedding' (MiniLM) when creating."),
        vector_backend: Optional[str] = typer.Option(None, "--vector-backend",
                                                     help="With --vectors: flat (default), hnsw, ivfpq, sq8, or milvus "
                                                          "(needs --vector-uri)."),
        vector_uri: Optional[str] = typer.Option(
            None, "--vector-uri", help="With --vector-backend milvus: a local FILE.db (Milvus Lite) or http://host:19530."),
        vector_collection: Optional[str] = typer.Option(None, "--vector-collection",
                                                        help="With --vector-backend milvus: the collection (default: "
                                                             "souk_<index name>_<random>)."),
        ray: Optional[str] = typer.Option(
            None, "--ray", help="Encode vectors on Ray: auto (a local cluster for this run) or a cluster ADDRESS."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object as the last line."),
    ) -> None:
        """Index a catalog: validate, analyze, write, commit. A failed first run leaves no index behind."""
        check_on_error(on_error, "--on-error")
        check_commit_every(commit_every, "--commit-every")
        t0 = time.perf_counter()
        from souk.cli.vectors import vector_options

        opened = open_or_create(data, index, schema, vectors, parse_columns(columns),
                                vector_options(index, vectors, vector_backend, vector_uri, vector_collection))
        for note in opened.notes:
            err_console.print(f"[yellow]note[/]: {escape(note)}", soft_wrap=True)
        with progress_bar("indexing", estimate_records(data)) as advance:
            run = index_records(opened, on_error, commit_every, ray, advance)
        elapsed = time.perf_counter() - t0
        prepare_s = _prepare_search(index) if run.commits else 0.0
        written, rejected, warnings = run.report.written, run.report.rejected, run.warnings
        result = {"index": str(index), "written": written, "rejected": len(rejected), "docs": run.docs,
                  "commits": run.commits, "seconds": round(elapsed, 3),
                  "docs_per_s": round(written / elapsed, 1) if elapsed else None,
                  "prepare_s": round(prepare_s, 3), "warnings": warnings, "notes": opened.notes}
        for line, fld, msg in rejected[:20]:
            err_console.print(f"[yellow]skipped[/] line {line}: {escape(fld + ': ' if fld else '')}{escape(msg)}",
                              soft_wrap=True)
        if len(rejected) > 20:
            err_console.print(f"[yellow]... and {len(rejected) - 20} more rejected records[/]")
        for warning in warnings:
            err_console.print(f"[yellow]warning[/]: {escape(warning)}", soft_wrap=True)
        if as_json:
            result["rejects"] = [{"line": n, "field": f, "message": m} for n, f, m in rejected]
            emit_json(result)
        else:
            console.print(f"indexed {written} records into {escape(str(index))} ({run.docs} docs, "
                          f"{len(rejected)} rejected) in {elapsed:.1f}s")

    @app.command("search")
    def search_cmd(
        query: str = typer.Argument("", help="Query text (empty: browse by filters)."),
        index: Path = typer.Option(..., "--index", help="Index directory."),
        filters: list[str] = typer.Option([], "--filter",
                                          help="FIELD=VALUE, FIELD!=VALUE, FIELD<N, FIELD>=N, FIELD=A..B; repeatable."),
        facets: list[str] = typer.Option([], "--facet", help="Keyword (counts) or number (min/max) field; repeatable."),
        k: int = typer.Option(10, "-k", "--k", help="Number of hits."),
        offset: int = typer.Option(0, "--offset", help="Skip this many hits (pagination)."),
        sort: Optional[str] = typer.Option(None, "--sort", help="Sort by a number field; '-price' for descending."),
        pipeline: str = typer.Option("keyword", "--pipeline",
                                     help="keyword, bm25, dense, hybrid, ltr, rerank, full or one the "
                                          "index config declares."),
        explain: bool = typer.Option(False, "--explain", help="Show the query plan and each hit's per-stage scores."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Search an index through a pipeline (keyword: BM25 with facets, sort and highlights over every match).

        Loading the index, its models and caches is timed apart (`load_ms`): `took_ms` is the search alone."""
        from souk.cli.quick import run_search  # also reached without typer: souk.cli.main's fast path

        run_search(query, index, filters, facets, k, offset, sort, pipeline, explain, as_json)

    @app.command("explain")
    def explain_cmd(
        query: str = typer.Argument(..., help="Query text."),
        index: Path = typer.Option(..., "--index", help="Index directory."),
        pipeline: str = typer.Option("keyword", "--pipeline", help="Pipeline whose per-stage scores to show."),
        k: int = typer.Option(5, "-k", "--k", help="Number of hits to explain."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Show the query plan (corrections, expansions, entities, intent) and each top hit's per-stage scores."""
        from souk.engine import Engine

        result = Engine.open(index).search(query, pipeline=pipeline, k=k, explain=True)
        if as_json:
            emit_json({"plan": result.plan, "timings_ms": result.timings_ms,
                       "hits": [{"id": h.id, "explain": h.explain} for h in result.hits]})
            return
        _print_explain(result)

    @app.command("stats")
    def stats_cmd(index: Path = typer.Option(..., "--index"), as_json: bool = typer.Option(False, "--json")) -> None:
        """Document count, fields and size of an index."""
        stats = open_index(index).stats()
        if as_json:
            emit_json(stats)
        else:
            console.print(f"{index}: {stats['docs']} docs, {stats['bytes'] / 1e6:.1f} MB, "
                          f"{stats['segments']} segment(s)")
            console.print("fields: " + ", ".join(f"{f['name']} ({f['kind']})" for f in stats["fields"]))
            for name, model in stats.get("models", {}).items():
                measured = model.get("measured", {}).get(model.get("backend"), {})
                speed = (
                    f", {measured['docs_per_s']} docs/s, cosine to fp32 {measured['cos_mean']:.4f}" if measured else ""
                )
                here = model.get("here") or {}
                queries = here.get("query_backend", model.get("query_backend"))
                where = "" if not here else (" (measured on this machine)" if here.get("measured_here") else
                                             " (not measured on this machine: the figures are the committing one's)")
                console.print(f"vectors {name}: {model.get('model')} on {model.get('backend')}{speed}; "
                              f"queries on {queries}{where}")
            cross = stats.get("cross")
            if cross:
                chosen = cross["measured"].get(cross["backend"] or "", {})
                console.print(f"cross-encoder {cross['model']}: on {cross['backend']}" + (
                    f", {chosen.get('pairs_per_s')} pairs/s, correlation to fp32 {chosen.get('corr', 1.0):.4f}"
                    if chosen and cross.get("measured_here") else " (not measured on this machine: activating "
                    "the model or a server measures it)"))

    @app.command("delete")
    def delete_cmd(ids: list[str] = typer.Argument(..., help="Document ids."),
                   index: Path = typer.Option(..., "--index"),
                   as_json: bool = typer.Option(False, "--json")) -> None:
        """Delete documents by id (committed at once)."""
        from souk.indexing import write_batch

        done = write_batch(open_index(index), delete=ids)
        docs = done["docs"]
        result = {"requested": len(ids), "deleted": done["deleted"], "docs": docs}
        if as_json:
            emit_json(result)
        else:
            missing = len(ids) - result["deleted"]
            console.print(f"deleted {result['deleted']} "
                          f"document(s){f' ({missing} id(s) not found)' if missing else ''}; {docs} remain")


def _print_explain(result) -> None:
    plan = result.plan
    console.print(f"[bold]plan[/]: {plan['original']!r} -> {plan['text']!r}; steps {', '.join(plan['steps'])}")
    for key in ("corrections", "expansions", "entities", "intent", "notes"):
        if plan.get(key):
            console.print(f"  {key}: {plan[key]}")
    if result.dropped:
        console.print(f"  relaxed: dropped {', '.join(result.dropped)}")
    console.print("timings: " + ", ".join(f"{k} {v:.1f} ms" for k, v in result.timings_ms.items()))
    for hit in result.hits:
        console.print(f"  {escape(hit.id)}: " + ", ".join(_explained(k, v) for k, v in hit.explain.items()))


def _explained(name: str, node: dict) -> str:
    """One stage's explanation on a line: `ltr #1 0.812`, its children in brackets."""
    rank = f" #{node['rank']}" if node.get("rank") is not None else ""
    inner = " ".join(_explained(c["description"], c) for c in node.get("children", []))
    return f"{escape(name)}{rank} {node['score']:.3f}" + (f" ({inner})" if inner else "")


def _print_result(result, schema: Schema, sort: str | None = None, load_ms: float | None = None) -> None:
    for note in result.notes:
        console.print(f"[yellow]{note}[/]")
    if result.did_you_mean:
        console.print(f"did you mean: [bold]{result.did_you_mean}[/]")
    if result.suggestions:
        console.print("no results; try: " + ", ".join(f"[bold]{escape(s)}[/]" for s in result.suggestions))
    if result.dropped:
        console.print("[yellow]relaxed: too few results hold every word; showing results without "
                      f"{', '.join(result.dropped)}[/]")
    if result.partial:
        console.print(f"[yellow]the last {result.partial} results hold only some of the query's words[/]")
    elif result.relaxed:
        console.print(
            "[yellow]no exact matches for the phrase or required words; showing matches of the plain words[/]"
        )
    loaded = f" (index and models loaded in {load_ms:,.0f} ms before)" if load_ms is not None else ""
    table = Table(title=f"{result.total} hits in {result.took_ms:.1f} ms{loaded}", show_lines=False)
    table.add_column("#", justify="right")
    table.add_column("id")
    table.add_column(sort.lstrip("+-") if sort else "score", justify="right")
    table.add_column("document")
    shown = [f.name for f in schema.fields.values()
             if f.kind in ("text", "keyword", "number", "stored") and not f.copy_from and f.name != schema.id_field][:6]
    for i, hit in enumerate(result.hits, result.offset + 1):
        parts = []
        for name in shown:
            value = hit.highlights.get(name) or hit.doc.get(name)
            if value in (None, "", []):
                continue
            if schema.fields[name].kind == "number" and isinstance(value, (int, float)):
                value = format_value(value, schema.fields[name].unit)  # the schema's currency, or none
            value = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
            value = plain_text(value.replace("<mark>", "\x01").replace("</mark>", "\x02"))
            value = value.replace("\x01", "[bold yellow]").replace("\x02", "[/]")
            parts.append(f"[dim]{name}:[/] {value[:200]}")
        key = hit.doc.get(sort.lstrip("+-")) if sort else f"{hit.score:.3f}"
        if sort and isinstance(key, (int, float)):
            key = format_value(key, schema.fields[sort.lstrip("+-")].unit)
        table.add_row(str(i), hit.id, str(key), "\n".join(parts))
    console.print(table)
    for name, facet in result.facets.items():
        console.print(facet_line(name, facet))
