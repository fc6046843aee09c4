"""`souk bench ...` commands owned by the core (keyword); other benches register themselves."""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import typer

from souk.cli.options import DatasetOpt, JsonOpt, SplitOpt, show_result


def run_bench(name: str, as_json: bool, *args: Any, **kwargs: Any) -> None:
    """`souk.bench.<name>.bench_<name>(*args, **kwargs)`, imported only when that bench runs; its result shown."""
    bench = getattr(importlib.import_module(f"souk.bench.{name}"), f"bench_{name}")
    show_result(bench(*args, **kwargs), as_json)


def register(bench_app: typer.Typer) -> None:
    @bench_app.command("keyword")
    def keyword_cmd(
        dataset: DatasetOpt,
        split: SplitOpt = None,
        k: int = typer.Option(100, "-k", help="Hits per query."),
        repeat: int = typer.Option(1, "--repeat", help="Run the query set this many times."),
        as_json: JsonOpt = False,
    ) -> None:
        """souk BM25 vs bm25s: queries/s, indexing docs/s, nDCG@10, memory."""
        run_bench("keyword", as_json, dataset, split, k, repeat)

    @bench_app.command("index")
    def index_cmd(
        dataset: DatasetOpt,
        repeat: int = typer.Option(2, "--repeat", min=1, help="Runs per side (medians reported)."),
        as_json: JsonOpt = False,
    ) -> None:
        """souk indexing vs bm25s indexing the same corpus and tokens: docs/s and their ratio."""
        run_bench("index", as_json, dataset, repeat)

    @bench_app.command("cli")
    def cli_cmd(
        index: Path = typer.Option(..., "--index", help="Index directory to search."),
        query: str = typer.Option("water", "--query", help="The query each process searches."),
        runs: int = typer.Option(7, "--runs", min=1, help="Timed processes per side (medians reported)."),
        pipeline: str = typer.Option("keyword", "--pipeline", help="e.g. hybrid: the first query of a process."),
        as_json: JsonOpt = False,
    ) -> None:
        """Whole `souk search` processes vs a bare Python process opening the same tantivy index (medians)."""
        run_bench("cli", as_json, index, query, runs, pipeline)

    @bench_app.command("serve")
    def serve_cmd(
        index: Path = typer.Option(..., "--index", help="Index directory to serve."),
        clients: int = typer.Option(16, "--clients", help="Concurrent HTTP clients."),
        seconds: float = typer.Option(10.0, "--seconds", help="How long the clients run."),
        pipeline: str = typer.Option("keyword", "--pipeline"),
        workers: int = typer.Option(1, "--workers", help="Server processes (`souk serve --workers`)."),
        as_json: JsonOpt = False,
    ) -> None:
        """HTTP throughput and latency of `souk serve` on loopback vs in-process search."""
        run_bench("serve", as_json, index, clients, seconds, pipeline, workers)


