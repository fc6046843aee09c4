"""`souk bench ...` commands owned by the core (keyword); other benches register themselves."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from souk.cli.output import console, emit_json


def register(bench_app: typer.Typer) -> None:
    @bench_app.command("keyword")
    def keyword_cmd(
        dataset: Path = typer.Option(..., "--dataset", help="BEIR directory."),
        split: Optional[str] = typer.Option(None, "--split", help="qrels split (default: test, dev or train)."),
        k: int = typer.Option(100, "-k", help="Hits per query."),
        repeat: int = typer.Option(1, "--repeat", help="Run the query set this many times."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """souk BM25 vs bm25s: queries/s, indexing docs/s, nDCG@10, memory."""
        from souk.bench.keyword import bench_keyword

        result = bench_keyword(dataset, split, k, repeat)
        _show(result, as_json)

    @bench_app.command("index")
    def index_cmd(
        dataset: Path = typer.Option(..., "--dataset", help="BEIR directory."),
        repeat: int = typer.Option(2, "--repeat", min=1, help="Runs per side (medians reported)."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """souk indexing vs bm25s indexing the same corpus and tokens: docs/s and their ratio."""
        from souk.bench.index import bench_index

        result = bench_index(dataset, repeat)
        _show(result, as_json)

    @bench_app.command("cli")
    def cli_cmd(
        index: Path = typer.Option(..., "--index", help="Index directory to search."),
        query: str = typer.Option("water", "--query", help="The query each process searches."),
        runs: int = typer.Option(7, "--runs", min=1, help="Timed processes per side (medians reported)."),
        pipeline: str = typer.Option("keyword", "--pipeline", help="e.g. hybrid: the first query of a process."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Whole `souk search` processes vs a bare Python process opening the same tantivy index (medians)."""
        from souk.bench.cli import bench_cli

        result = bench_cli(index, query, runs, pipeline)
        _show(result, as_json)

    @bench_app.command("serve")
    def serve_cmd(
        index: Path = typer.Option(..., "--index", help="Index directory to serve."),
        clients: int = typer.Option(16, "--clients", help="Concurrent HTTP clients."),
        seconds: float = typer.Option(10.0, "--seconds", help="How long the clients run."),
        pipeline: str = typer.Option("keyword", "--pipeline"),
        workers: int = typer.Option(1, "--workers", help="Server processes (`souk serve --workers`)."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """HTTP throughput and latency of `souk serve` on loopback vs in-process search."""
        from souk.bench.serve import bench_serve

        result = bench_serve(index, clients, seconds, pipeline, workers)
        _show(result, as_json)


def _show(result: dict, as_json: bool) -> None:
    """A bench's result: one JSON line, or one `key: value` line per entry."""
    if as_json:
        emit_json(result)
    else:
        for key, value in result.items():
            console.print(f"{key:>24}: {value}")
