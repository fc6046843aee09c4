"""Commands over one index: `index`, `search`, `stats`, `delete`."""
from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Iterable, Iterator, Optional

import typer
from rich.table import Table

from souk.catalogs import Record, detect_format, read_catalog
from souk.cli.output import console, emit_json, err_console, progress_bar
from souk.errors import ConfigError
from souk.index import Index
from souk.schema import Schema, beir_schema, infer_schema

INFER_SAMPLE = 1000


def open_or_create(data: Path, index_dir: Path, schema_file: Path | None, vectors: bool) -> tuple[Index, Iterator[Record]]:
    """Open the index at `index_dir`, or create it with the given, BEIR or inferred schema."""
    records = read_catalog(data)
    if Index.exists(index_dir):
        index = Index.open(index_dir)
        if schema_file and Schema.load(schema_file).to_dict()["fields"] != index.schema.to_dict()["fields"]:
            raise ConfigError(f"{index_dir} exists with another schema; index into a new directory to change it")
        if vectors and not index.schema.vector_fields:
            raise ConfigError(f"{index_dir} exists without a vector field; --vectors only applies when creating an index: index into a new directory")
        return index, records
    if schema_file:
        schema = Schema.load(schema_file)
    elif detect_format(data) == "beir":
        schema = beir_schema()
    else:
        head = list(itertools.islice(records, INFER_SAMPLE))
        schema = infer_schema([r.data for r in head if r.data is not None])
        records = itertools.chain(head, records)
    if vectors:
        schema = with_vector_field(schema)
    return Index.create(index_dir, schema), records


def with_vector_field(schema: Schema, name: str = "embedding") -> Schema:
    """The schema plus a vector field `name` over its (non-copy) text fields."""
    data = schema.to_dict()
    data["fields"][name] = {"kind": "vector", "params": {"source": schema.content_fields()}}
    return Schema.from_dict(data, origin="schema with --vectors")


def _count_records(data: Path) -> int | None:
    try:
        fmt = detect_format(data)
        path = data / "corpus.jsonl" if fmt == "beir" else data
        if fmt in ("jsonl", "beir", "csv", "tsv"):
            with path.open("rb") as fh:
                return sum(1 for line in fh if line.strip()) - (1 if fmt in ("csv", "tsv") else 0)
    except OSError:
        return None
    return None


def _chunks(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    it = iter(records)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def register(app: typer.Typer) -> None:
    @app.command("index")
    def index_cmd(
        data: Path = typer.Argument(..., help="Catalog: .jsonl, .json, .csv, .tsv or a BEIR directory."),
        index: Path = typer.Option(..., "--index", help="Index directory (created, or added to/updated)."),
        schema: Optional[Path] = typer.Option(None, "--schema", help="Schema TOML; inferred when absent."),
        on_error: str = typer.Option("fail", "--on-error", help="fail: commit nothing from a bad batch; skip: commit the rest."),
        commit_every: int = typer.Option(0, "--commit-every", help="Commit after every N records (0: once at the end)."),
        vectors: bool = typer.Option(False, "--vectors", help="Add a dense vector field 'embedding' (MiniLM) when creating."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object as the last line."),
    ) -> None:
        """Index a catalog: validate, analyze, write, commit."""
        if on_error not in ("fail", "skip"):
            raise ConfigError(f"--on-error must be 'fail' or 'skip', not {on_error!r}")
        t0 = time.perf_counter()
        idx, records = open_or_create(data, index, schema, vectors)
        written, rejected, commits = 0, [], 0
        with idx.writer() as writer, progress_bar("indexing", _count_records(data)) as advance:
            for chunk in _chunks(records, commit_every) if commit_every > 0 else [records]:
                report = writer.add(chunk, on_error=on_error, progress=advance)
                writer.commit()
                commits += 1
                written += report.written
                rejected.extend(report.rejected)
        elapsed = time.perf_counter() - t0
        stats = idx.stats()
        result = {"index": str(index), "written": written, "rejected": len(rejected), "docs": stats["docs"],
                  "commits": commits, "seconds": round(elapsed, 3), "docs_per_s": round(written / elapsed, 1) if elapsed else None}
        for line, fld, msg in rejected[:20]:
            err_console.print(f"[yellow]skipped[/] line {line}: {fld + ': ' if fld else ''}{msg}")
        if len(rejected) > 20:
            err_console.print(f"[yellow]... and {len(rejected) - 20} more rejected records[/]")
        if as_json:
            result["rejects"] = [{"line": l, "field": f, "message": m} for l, f, m in rejected]
            emit_json(result)
        else:
            console.print(f"indexed {written} records into {index} ({stats['docs']} docs, "
                          f"{len(rejected)} rejected) in {elapsed:.1f}s")

    @app.command("search")
    def search_cmd(
        query: str = typer.Argument("", help="Query text (empty: browse by filters)."),
        index: Path = typer.Option(..., "--index", help="Index directory."),
        filters: list[str] = typer.Option([], "--filter", help="FIELD=VALUE, FIELD!=VALUE, FIELD<N, FIELD>=N, FIELD=A..B; repeatable."),
        facets: list[str] = typer.Option([], "--facet", help="Keyword (counts) or number (min/max) field; repeatable."),
        k: int = typer.Option(10, "-k", "--k", help="Number of hits."),
        offset: int = typer.Option(0, "--offset", help="Skip this many hits (pagination)."),
        sort: Optional[str] = typer.Option(None, "--sort", help="Sort by a number field; '-price' for descending."),
        pipeline: str = typer.Option("keyword", "--pipeline", help="keyword, bm25, dense, hybrid, ltr, rerank, full or one the index config declares."),
        explain: bool = typer.Option(False, "--explain", help="Show the query plan and each hit's per-stage scores."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Search an index through a pipeline (keyword: BM25 with facets, sort and highlights over every match)."""
        from souk.engine import Engine

        engine = Engine.open(index)
        result = engine.search(query, pipeline=pipeline, filters=filters, facets=facets, sort=sort,
                               k=k, offset=offset, explain=explain)
        if as_json:
            emit_json(result.to_dict())
            return
        _print_result(result, engine.index.schema, sort)
        if explain and result.plan:
            _print_explain(result)

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
        stats = Index.open(index).stats()
        if as_json:
            emit_json(stats)
        else:
            console.print(f"{index}: {stats['docs']} docs, {stats['bytes'] / 1e6:.1f} MB, {stats['segments']} segment(s)")
            console.print("fields: " + ", ".join(f"{f['name']} ({f['kind']})" for f in stats["fields"]))

    @app.command("delete")
    def delete_cmd(ids: list[str] = typer.Argument(..., help="Document ids."), index: Path = typer.Option(..., "--index"),
                   as_json: bool = typer.Option(False, "--json")) -> None:
        """Delete documents by id (committed at once)."""
        idx = Index.open(index)
        before = idx.searcher().num_docs
        with idx.writer() as writer:
            writer.delete(ids)
            writer.commit()
        docs = idx.stats()["docs"]
        result = {"requested": len(ids), "deleted": before - docs, "docs": docs}
        if as_json:
            emit_json(result)
        else:
            missing = len(ids) - result["deleted"]
            console.print(f"deleted {result['deleted']} document(s){f' ({missing} id(s) not found)' if missing else ''}; {docs} remain")


def _print_explain(result) -> None:
    plan = result.plan
    console.print(f"[bold]plan[/]: {plan['original']!r} -> {plan['text']!r}; steps {', '.join(plan['steps'])}")
    for key in ("corrections", "expansions", "entities", "intent", "notes"):
        if plan.get(key):
            console.print(f"  {key}: {plan[key]}")
    console.print("timings: " + ", ".join(f"{k} {v:.1f} ms" for k, v in result.timings_ms.items()))
    for hit in result.hits:
        stages = ", ".join(f"{k} #{v['rank']} {v['score']:.3f}" for k, v in hit.explain.items() if k != "signals")
        console.print(f"  {hit.id}: {stages} {hit.explain.get('signals', '')}")


def _print_result(result, schema: Schema, sort: str | None = None) -> None:
    for note in result.notes:
        console.print(f"[yellow]{note}[/]")
    if result.did_you_mean:
        console.print(f"did you mean: [bold]{result.did_you_mean}[/]")
    if result.relaxed:
        console.print("[yellow]no exact matches for the phrase or required words; showing matches of the plain words[/]")
    table = Table(title=f"{result.total} hits in {result.took_ms:.1f} ms", show_lines=False)
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
            value = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
            value = value.replace("[", "\\[").replace("<mark>", "[bold yellow]").replace("</mark>", "[/]")
            parts.append(f"[dim]{name}:[/] {value[:200]}")
        key = hit.doc.get(sort.lstrip("+-")) if sort else f"{hit.score:.3f}"
        table.add_row(str(i), hit.id, str(key), "\n".join(parts))
    console.print(table)
    for name, facet in result.facets.items():
        if "buckets" in facet:
            values = ", ".join(f"{v} ({c})" for v, c in facet["buckets"])
            console.print(f"[bold]{name}[/] ({facet['distinct']} distinct): {values}")
        else:
            console.print(f"[bold]{name}[/]: min {facet['min']}, max {facet['max']}, avg {facet['avg']}")
