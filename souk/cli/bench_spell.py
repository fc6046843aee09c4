"""`souk bench spell`: BM25 nDCG@10 with and without spelling correction on a BEIR split."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from souk.cli.output import console, emit_json


def register(bench_app: typer.Typer) -> None:
    """Add `spell` to the bench commands."""
    bench_app.command("spell")(bench_spell_command)


def bench_spell_command(
    dataset: Path = typer.Option(..., "--dataset", help="BEIR directory (queries with real typos, e.g. homedepot)."),
    split: str = typer.Option("dev", "--split", help="qrels split: qrels/<split>.tsv (tune on train, report dev)."),
    index: Optional[Path] = typer.Option(None, "--index", help="Index of the corpus (default: build a temporary one)."),
    log: Optional[Path] = typer.Option(None, "--log", help="Query log adding frequencies (one query a line)."),
    overrides: list[str] = typer.Option([], "--set", help="SpellConfig KEY=VALUE, repeatable (e.g. edit_cost=4)."),
    plenty: int = typer.Option(1, "--plenty", help="decide(): hits the correction needs for an automatic rewrite."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object as the last line."),
) -> None:
    """Share of queries corrected; nDCG@10 before/after on them and on the whole split."""
    from souk.bench.spell import bench_spell, parse_overrides

    result = bench_spell(dataset, split, index, parse_overrides(overrides), log, plenty)
    if as_json:
        emit_json(result)
        return
    for key, value in result.items():
        if key not in ("config", "largest_changes"):
            console.print(f"{key:>20}: {value}")
    for row in result["largest_changes"]:
        console.print(f"  {row['before']:.3f} -> {row['after']:.3f}  {row['query']!r} -> {row['corrected']!r}")
