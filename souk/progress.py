"""Progress bars for long work (rich, on stderr so stdout stays clean for `--json`)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

err_console = Console(stderr=True)


@contextmanager
def progress_bar(description: str, total: int | None, enabled: bool = True) -> Iterator[Callable[..., None]]:
    """Yield `advance(n=1, status=None)`; a status (e.g. "loss 0.31") shows after the description.
    The bar shows only when enabled and stderr is a terminal."""
    if not enabled:
        yield lambda n=1, status=None: None
        return
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=err_console, disable=not err_console.is_terminal) as prog:
        task = prog.add_task(description, total=total)

        def advance(n: int = 1, status: str | None = None) -> None:
            prog.update(task, advance=n, description=f"{description} {status}" if status else description)

        yield advance
