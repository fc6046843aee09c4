"""Commands over one index: `index`, `search`, `stats`, `delete`."""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional

import typer
from rich.markup import escape
from rich.table import Table

from souk.catalogs import Record, detect_format, estimate_records, read_catalog
from souk.cli.output import console, emit_json, err_console, facet_line, plain_text, progress_bar
from souk.errors import ConfigError, DocumentError
from souk.index import Index
from souk.index.writer import WriteReport
from souk.schema import Inference, Schema, beir_schema, complete, infer, read_schema_file
from souk.serving.display import format_value

INFER_SAMPLE = 1000


@dataclass
class Opened:
    """An index ready for a catalog: its records, notes on guessed schema parts, and whether this run made it."""

    index: Index
    records: Iterator[Record]
    notes: list[str] = field(default_factory=list)
    created: bool = False


def open_or_create(data: Path, index_dir: Path, schema_file: Path | None, vectors: bool,
                   columns: list[str] | None = None, vector_params: dict | None = None) -> Opened:
    """Open the index at `index_dir`, or create it with the given, BEIR or inferred schema.

    A schema file without [fields] is completed from the catalog; CSV column names come from
    `columns`, the schema file's `[catalog] columns` or, for an existing index, its schema."""
    raw = read_schema_file(schema_file) if schema_file else None
    if Index.exists(index_dir):
        index = Index.open(index_dir)
        if raw is not None and "fields" in raw:
            if Schema.from_dict(raw, origin=str(schema_file)).to_dict()["fields"] != index.schema.to_dict()["fields"]:
                raise ConfigError(f"{index_dir} exists with another schema; index into a new directory to change it")
        elif raw is not None and raw.get("id", index.schema.id_field) != index.schema.id_field:
            raise ConfigError(f"{index_dir} exists with id field {index.schema.id_field!r}, not {raw.get('id')!r}")
        if vectors and not index.schema.vector_fields:
            raise ConfigError(f"{index_dir} exists without a vector field; --vectors only applies when creating an "
                              "index: index into a new directory")
        cols = columns or _file_columns(raw, schema_file) or index.schema.catalog.get("columns")
        return Opened(index, read_catalog(data, columns=cols))
    cols = columns or _file_columns(raw, schema_file)
    records = read_catalog(data, columns=cols)
    if raw is not None and "fields" in raw:
        inference = Inference(Schema.from_dict(raw, origin=str(schema_file)))
    elif raw is None and detect_format(data) == "beir":
        inference = Inference(beir_schema())
    else:
        head = list(itertools.islice(records, INFER_SAMPLE))
        sample = [r.data for r in head if r.data is not None]
        if head and not sample:
            raise DocumentError(f"{data}: none of the first {len(head)} records could be read to infer a schema "
                                f"(line {head[0].line}: {head[0].error})", [(r.line, "", r.error or "") for r in head])
        inference = complete(raw, sample, origin=str(schema_file)) if raw is not None else infer(sample)
        records = itertools.chain(head, records)
    schema = inference.schema
    if columns:
        data_ = schema.to_dict()
        data_["catalog"] = {**data_.get("catalog", {}), "columns": list(columns)}
        schema = Schema.from_dict(data_, origin="schema with --columns")
    if vectors:
        schema = with_vector_field(schema, params=vector_params)
    return Opened(Index.create(index_dir, schema), records, inference.notes, created=True)


def _file_columns(raw: dict | None, schema_file: Path | None) -> list[str] | None:
    catalog = (raw or {}).get("catalog")
    if catalog is None:
        return None
    if not isinstance(catalog, dict):
        raise ConfigError(f"{schema_file}: catalog must be a table ([catalog])")
    columns = catalog.get("columns")
    if columns is not None and (not isinstance(columns, list) or not all(isinstance(c, str) for c in columns)):
        raise ConfigError(f"{schema_file}: catalog.columns: expected a list of column names")
    return columns


def parse_columns(text: str | None) -> list[str] | None:
    """`--columns a,b,c` as a list of names."""
    if text is None:
        return None
    names = [c.strip() for c in text.split(",")]
    if not all(names):
        raise ConfigError(f"--columns {text!r}: expected names separated by commas, such as id,title,price")
    return names


def with_vector_field(schema: Schema, name: str = "embedding", params: dict | None = None) -> Schema:
    """The schema plus a vector field `name` over its (non-copy) text fields (`params`: more of its params)."""
    data = schema.to_dict()
    data["fields"][name] = {"kind": "vector", "params": {"source": schema.content_fields(), **(params or {})}}
    return Schema.from_dict(data, origin="schema with --vectors")


def _chunks(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    it = iter(records)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def _warnings(total: WriteReport, schema: Schema, docs_before: int, docs: int, created: bool) -> list[str]:
    """What happened to the data without being an error: fields never filled, records merged by id."""
    out = []
    for name in total.empty_fields(schema):
        f = schema.fields[name]
        out.append(f"declared field {name} was empty in every record (its source {f.source!r} was never found); "
                   "check the field name or its `from` path")
    replaced = total.written - (docs - docs_before)
    if replaced > 0:
        where = "an earlier record of this catalog" if created else "an earlier record or an indexed document"
        out.append(f"{replaced} of {total.written} records had the id of {where} and replaced it "
                   f"(id field {schema.id_field!r}; ids are compared after trimming and NFKC normalization)")
    return out


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
        if on_error not in ("fail", "skip"):
            raise ConfigError(f"--on-error must be 'fail' or 'skip', not {on_error!r}")
        if commit_every < 0:
            raise ConfigError("--commit-every must be 0 (one commit at the end) or a number of "
                              f"records, not {commit_every}")
        t0 = time.perf_counter()
        from souk.cli.vectors import vector_options

        opened = open_or_create(data, index, schema, vectors, parse_columns(columns),
                                vector_options(index, vectors, vector_backend, vector_uri, vector_collection))
        idx = opened.index
        for note in opened.notes:
            err_console.print(f"[yellow]note[/]: {escape(note)}", soft_wrap=True)
        docs_before = 0 if opened.created else idx.searcher().num_docs
        total, commits = WriteReport(), 0
        from souk.cli.vectors import ray_encoding

        try:
            with (
                ray_encoding(idx, ray) as pre,
                idx.writer() as writer,
                progress_bar("indexing", estimate_records(data)) as advance,
            ):
                for chunk in _chunks(opened.records, commit_every) if commit_every > 0 else [opened.records]:
                    report = writer.add(pre(chunk), on_error=on_error, progress=advance)
                    writer.commit()
                    commits += 1
                    total.merge(report)
        except BaseException:
            if opened.created and commits == 0:
                idx.discard()  # a failed first run leaves nothing behind
            raise
        elapsed = time.perf_counter() - t0
        written, rejected = total.written, total.rejected
        stats = idx.stats()
        warnings = _warnings(total, idx.schema, docs_before, stats["docs"], opened.created)
        result = {"index": str(index), "written": written, "rejected": len(rejected), "docs": stats["docs"],
                  "commits": commits, "seconds": round(elapsed, 3), "docs_per_s": round(written / elapsed, 1) if elapsed
                  else None,
                  "warnings": warnings, "notes": opened.notes}
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
            console.print(f"indexed {written} records into {escape(str(index))} ({stats['docs']} docs, "
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
        stats = Index.open(index).stats()
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
                console.print(f"vectors {name}: {model.get('model')} on {model.get('backend')}{speed}; "
                              f"queries on {model.get('query_backend')}")

    @app.command("delete")
    def delete_cmd(ids: list[str] = typer.Argument(..., help="Document ids."),
                   index: Path = typer.Option(..., "--index"),
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
        stages = ", ".join(f"{k} #{v['rank']} {v['score']:.3f}" for k, v in hit.explain.items() if k != "signals")
        console.print(f"  {hit.id}: {stages} {hit.explain.get('signals', '')}")


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
