"""`souk bench encoder` and `souk bench ann` (dense recall benchmarks)."""
from __future__ import annotations

from typing import Any, Optional

import typer

from souk.cli.options import DatasetOpt, JsonOpt, SplitOpt, show_result
from souk.cli.output import console, emit_json


def register(bench_app: typer.Typer) -> None:
    @bench_app.command("encoder")
    def encoder_cmd(
        dataset: DatasetOpt,
        split: SplitOpt = None,
        max_docs: Optional[int] = typer.Option(None, "--max-docs",
                                               help="Encode a seeded sample of this many docs (judged ones kept)."),
        isa: str = typer.Option("native", "--isa",
                                help="native, or avx2: both sides rerun in a process that sees an AVX2-only "
                                     "CPU (CPUID masked where possible; the result lists what was not capped)."),
        as_json: JsonOpt = False,
    ) -> None:
        """Docs/s of souk's chosen encoder path vs sentence-transformers fp32; nDCG@10 of both."""
        from souk.bench.encoder import bench_encoder, bench_encoder_capped

        if isa not in ("native", "avx2"):
            raise typer.BadParameter("native or avx2", param_hint="--isa")
        show_result((bench_encoder if isa == "native" else bench_encoder_capped)(dataset, split, max_docs), as_json)

    @bench_app.command("ann")
    def ann_cmd(
        dataset: DatasetOpt,
        split: SplitOpt = None,
        index: Optional[list[str]] = typer.Option(None, "--index", help="Index type(s); default: all."),
        transform: str = typer.Option("none", "--transform", help='"none", "whiten" or "pca:N".'),
        max_docs: Optional[int] = typer.Option(None, "--max-docs", help="Use a seeded sample of this many docs."),
        k: int = typer.Option(10, "-k", min=1, help="Neighbours per query (recall@k against exact search)."),
        as_json: JsonOpt = False,
    ) -> None:
        """Per FAISS index type: recall@k against exact search, queries/s, memory, build time, nDCG@10."""
        from souk.bench.ann import bench_ann

        result = bench_ann(dataset, split, index or None, transform, max_docs, k)
        if as_json:
            emit_json(result)
            return
        console.print(ann_table(result))


def ann_table(result: dict[str, Any]) -> Any:
    """`souk bench ann`'s table (a rich Table) of its JSON result: a row per index type."""
    from rich.table import Table

    rows = result["rows"]
    table = Table(title=f"{result['docs']} docs, {result['queries']} queries, dim {result['dim']}, transform "
                        f"{result['transform']}")
    for col in rows[0]:
        table.add_column(col, justify="left" if col == "index" else "right")
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    return table
