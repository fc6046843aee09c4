"""Progress for long work, on stderr so stdout stays clean for `--json`: a rich bar on a terminal,
plain log lines (`indexing: 1200/19347 (6%), 12s elapsed, about 180s left`) every
`SOUK_PROGRESS_SECONDS` (default 10) when stderr is a file or a pipe, so logs of long runs show life."""
from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator, TextIO

if TYPE_CHECKING:
    from rich.console import Console

    err_console: Console

LOG_SECONDS = 10.0


def __getattr__(name: str) -> Any:
    """`err_console`, made on first use: rich costs 50-150 ms of imports, which a CLI search never needs."""
    if name != "err_console":
        raise AttributeError(f"module 'souk.progress' has no attribute {name!r}")
    from rich.console import Console

    console = globals()["err_console"] = Console(stderr=True)
    return console


@contextmanager
def progress_bar(description: str, total: int | None, enabled: bool = True) -> Iterator[Callable[..., None]]:
    """Yield `advance(n=1, status=None)`: a bar on a terminal, log lines otherwise, nothing when not
    enabled; `status` (e.g. "loss 0.41 dev 0.70") follows the description."""
    if not enabled:
        yield lambda n=1, status=None: None
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    from souk.progress import err_console

    if not err_console.is_terminal:
        log = ProgressLog(description, total, _log_seconds())
        yield log.advance
        log.finish()
        return
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn()]
    with Progress(*columns, console=err_console) as prog:
        task = prog.add_task(description, total=total)

        def advance(n: int = 1, status: str | None = None) -> None:
            prog.update(task, advance=n, description=f"{description} {status}" if status else None)

        yield advance


class ProgressLog:
    """Plain progress lines at most every `seconds`; a closing line only if a progress line was written
    (short runs stay silent)."""

    def __init__(self, description: str, total: int | None, seconds: float = LOG_SECONDS, out: TextIO | None = None):
        self.description, self.total, self.seconds = description, total, seconds
        self.out = out
        self.done = 0
        self.lines = 0
        self.status: str | None = None
        self.start = self.last = time.monotonic()

    def advance(self, n: int = 1, status: str | None = None) -> None:
        self.done += n
        self.status = status or self.status
        now = time.monotonic()
        if now - self.last >= self.seconds:
            self.last = now
            self._write(self.line(now))

    def line(self, now: float) -> str:
        elapsed = now - self.start
        what = f"{self.description} {self.status}" if self.status else self.description
        if not self.total:
            return f"{what}: {self.done}, {elapsed:.0f}s elapsed"
        share = min(self.done / self.total, 1.0)
        left = f", about {elapsed / share * (1 - share):.0f}s left" if 0 < share < 1 else ""
        return f"{what}: {self.done}/{self.total} ({share:.0%}), {elapsed:.0f}s elapsed{left}"

    def finish(self) -> None:
        if self.lines:
            self._write(f"{self.description}: done, {self.done} in {time.monotonic() - self.start:.0f}s")

    def _write(self, text: str) -> None:
        out = self.out or sys.stderr
        out.write(text + "\n")
        out.flush()
        self.lines += 1


def _log_seconds() -> float:
    try:
        return max(float(os.environ.get("SOUK_PROGRESS_SECONDS", LOG_SECONDS)), 0.0)
    except ValueError:
        return LOG_SECONDS
