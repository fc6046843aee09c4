"""`souk bench rerank`: souk's cross-encoder path vs sentence-transformers' CrossEncoder fp32."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from souk.cli.bench import run_bench
from souk.cli.options import DatasetOpt, JsonOpt, SplitOpt


def register(bench_app: typer.Typer) -> None:
    """Add `rerank` to the bench commands."""
    bench_app.command("rerank")(rerank_command)


def rerank_command(
    dataset: DatasetOpt,
    split: SplitOpt = None,
    index: Optional[Path] = typer.Option(None, "--index",
                                         help="Take candidates (and the active cross model) from this index."),
    model: Optional[Path] = typer.Option(None, "--model", help="Cross-encoder model directory (default: the index's "
                                         "active one, else MiniLM with an untrained head)."),
    depth: int = typer.Option(20, "--depth", min=1, help="Candidates reranked per query."),
    max_queries: Optional[int] = typer.Option(None, "--max-queries", min=1,
                                              help="A seeded sample of this many queries."),
    as_json: JsonOpt = False,
) -> None:
    """Pairs/s of souk's cross-encoder path vs sentence-transformers fp32 on the same weights; nDCG@10 of both."""
    from souk.bench.encoder import default_split

    run_bench("rerank", as_json, dataset, split or default_split(dataset), index, model, depth, max_queries)
