"""Entry point: builds the typer app from the command modules and turns SoukErrors into messages."""
from __future__ import annotations

import os
import sys

import typer

from souk.errors import SoukError

app = typer.Typer(
    name="souk", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="souk: search for product catalogs and document collections (Chinese and English).",
)
bench_app = typer.Typer(no_args_is_help=True, help="Side-by-side benchmarks against peers (ratios, same run).")
app.add_typer(bench_app, name="bench")


def _register() -> None:
    import importlib

    from souk.cli import catalog

    catalog.register(app)
    from souk.cli import bench

    bench.register(bench_app)
    for module, target in (("souk.cli.evaluate", app), ("souk.cli.bench_dense", bench_app), ("souk.cli.serve", app), ("souk.cli.ner", app)):
        try:
            importlib.import_module(module).register(target)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise


_register()


def main() -> None:
    """`souk` console script: a SoukError prints `error: ...` and exits with status 2."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        app()
    except SoukError as e:
        sys.stderr.write(f"error: {e}\n")
        sys.exit(2)
