"""`souk bench rerank`: souk's cross-encoder path vs sentence-transformers' CrossEncoder fp32."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from souk.cli.output import console, emit_json


def register(bench_app: typer.Typer) -> None:
    @bench_app.command("rerank")
    def rerank_cmd(
        dataset: Path = typer.Option(..., "--dataset", help="BEIR directory."),
        split: Optional[str] = typer.Option(None, "--split", help="qrels split (default: test, dev or train)."),
        index: Optional[Path] = typer.Option(None, "--index",
                                             help="Take candidates (and the active cross model) from this index."),
        model: Optional[Path] = typer.Option(None, "--model",
                                             help="Cross-encoder model directory (default: the index's active one, "
                                                  "else MiniLM with an untrained head)."),
        depth: int = typer.Option(20, "--depth", min=1, help="Candidates reranked per query."),
        max_queries: Optional[int] = typer.Option(None, "--max-queries", min=1,
                                                  help="A seeded sample of this many queries."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Pairs/s of souk's cross-encoder path vs sentence-transformers fp32 on the same weights; nDCG@10 of both."""
        from souk.bench.encoder import default_split
        from souk.bench.rerank import bench_rerank

        result = bench_rerank(dataset, split or default_split(dataset), index, model, depth, max_queries)
        if as_json:
            emit_json(result)
            return
        for key, value in result.items():
            console.print(f"{key:>18}: {value}")
