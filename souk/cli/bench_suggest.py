"""`souk bench suggest`: autocomplete latency on typed prefixes of real queries."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from souk.cli.output import console, emit_json


def register(bench_app: typer.Typer) -> None:
    @bench_app.command("suggest")
    def suggest_cmd(
        dataset: Optional[Path] = typer.Option(None, "--dataset",
                                               help="BEIR directory: titles from the corpus, train queries as the log, "
                                                    "dev/test queries typed."),
        index: Optional[Path] = typer.Option(None, "--index", help="Or an index (needs --queries)."),
        log: Optional[Path] = typer.Option(None, "--log",
                                           help="Query log for completions (replaces the dataset's train queries)."),
        queries: Optional[Path] = typer.Option(None, "--queries",
                                               help="Query file whose queries are typed as prefixes."),
        prefixes: int = typer.Option(2000, "--prefixes", min=1, help="Number of prefixes timed."),
        k: int = typer.Option(10, "-k", min=1, help="Completions per prefix."),
        seed: int = typer.Option(0, "--seed"),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """p50/p99 latency of souk's autocomplete vs a linear scan; build time; titles."""
        from souk.bench.suggest import bench_suggest

        result = bench_suggest(dataset, index, log, queries, prefixes, k, seed=seed)
        if as_json:
            emit_json(result)
            return
        for key, value in result.items():
            console.print(f"{key:>14}: {value}")
