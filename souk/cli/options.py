"""What commands share: one definition of each recurring option, command groups, and how a result is shown.

Options are `Annotated` types (`as_json: JsonOpt = False`), so a help text is written once.
Misuse: redefining `--json` or `--index` in a command module; import them from here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from souk.cli.output import console, emit_json

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object as the last line.")]
IndexOpt = Annotated[Path, typer.Option("--index", help="Index directory.")]
DatasetOpt = Annotated[Path, typer.Option("--dataset", help="BEIR directory.")]
SplitOpt = Annotated[Optional[str], typer.Option("--split", help="qrels split (default: test, dev or train).")]


def command_group(name: str, help: str) -> tuple[typer.Typer, Callable[[typer.Typer], None]]:
    """A command group (`souk NAME ...`) and the `register(app)` that adds it to the main app."""
    group = typer.Typer(no_args_is_help=True, help=help)

    def register(app: typer.Typer) -> None:
        app.add_typer(group, name=name)

    return group, register


def show_result(result: dict[str, Any], as_json: bool) -> None:
    """A command's result: one JSON line, or one aligned `key: value` line per entry."""
    if as_json:
        emit_json(result)
        return
    width = max((len(str(key)) for key in result), default=0)
    for key, value in result.items():
        console.print(f"{key:>{width}}: {value}")
