"""Entry point: builds the typer app from the command modules and turns SoukErrors into messages.

Every failure the user can cause ends the same way: `error: ...` on stderr, exit status 2, and with
`--json` also `{"error": ..., "kind": ...}` as the last stdout line, so scripts can rely on it.
"""
from __future__ import annotations

import os
import sys
import warnings
from typing import Any, NoReturn

import typer

from souk.errors import DocumentError, SoukError
from souk.version import __version__

app = typer.Typer(
    name="souk", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="souk: search for product catalogs and document collections (Chinese and English).",
)
bench_app = typer.Typer(no_args_is_help=True, help="Side-by-side benchmarks against peers (ratios, same run).")
app.add_typer(bench_app, name="bench")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"souk {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """souk: search for product catalogs and document collections (Chinese and English)."""


# (module, app): each module's `register(app)` adds its commands; one line per module.
COMMANDS = [
    ("souk.cli.evaluate", app),
    ("souk.cli.bench_dense", bench_app),
    ("souk.cli.fit", app),
    ("souk.cli.serve", app),
    ("souk.cli.spell", app),
    ("souk.cli.bench_spell", bench_app),
    ("souk.cli.suggest", app),
    ("souk.cli.bench_suggest", bench_app),
    ("souk.cli.bench_traffic", bench_app),
    ("souk.cli.synonyms", app),
    ("souk.cli.keywords", app),
    ("souk.cli.schema", app),
    ("souk.cli.clicks", app),
    ("souk.cli.bench_rerank", bench_app),
    ("souk.cli.ner", app),
    ("souk.cli.intent", app),
    ("souk.cli.events", app),
    ("souk.cli.vectors", app),
]


def _register() -> None:
    import importlib

    from souk.cli import catalog

    catalog.register(app)
    from souk.cli import bench

    bench.register(bench_app)
    for module, target in COMMANDS:
        importlib.import_module(module).register(target)


_register()


def main() -> None:
    """`souk` console script: a SoukError or a usage error prints `error: ...` and exits with status 2."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    as_json = "--json" in sys.argv[1:]
    warnings.showwarning = _show_warning
    try:
        code = app(standalone_mode=False)
    except SoukError as e:
        fail(str(e), type(e).__name__, as_json, _problems(e))
    except typer.TyperException as e:  # typer's click: bad options and arguments
        usage = any(c.__name__ == "UsageError" for c in type(e).__mro__)
        ctx = getattr(e, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if usage and ctx is not None else ""
        message = e.format_message() if hasattr(e, "format_message") else str(e)
        if not message.strip():  # `souk` alone: the help was the answer
            sys.exit(getattr(e, "exit_code", 2))
        fail(message + hint, "UsageError" if usage else type(e).__name__, as_json)
    except typer.Abort:
        fail("interrupted", "Interrupted", as_json, code=130)
    sys.exit(code if isinstance(code, int) else 0)


def fail(message: str, kind: str, as_json: bool, problems: list[dict[str, Any]] | None = None,
         code: int = 2) -> NoReturn:
    """End the command: `error: message` on stderr, the JSON error object on stdout with `--json`."""
    sys.stderr.write(f"error: {message}\n")
    if as_json:
        from souk.cli.output import emit_json

        emit_json({"error": message, "kind": kind, **({"problems": problems} if problems else {})})
    sys.exit(code)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Python warnings as one `warning: ...` line (no source excerpt), once per message."""
    sys.stderr.write(f"warning: {message}\n")


def _problems(e: SoukError) -> list[dict[str, Any]] | None:
    if isinstance(e, DocumentError) and e.problems:
        return [{"line": line, "field": fld, "message": msg} for line, fld, msg in e.problems]
    return None
