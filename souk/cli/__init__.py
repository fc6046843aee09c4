"""The `souk` command line: index, search, stats, delete, eval, compare, bench.

`main` is the console script (`souk.cli.entry`: a plain `souk search` skips building the typer app);
`app`, the typer app, is built on first access."""
from souk.cli.entry import main

__all__ = ["app", "main"]


def __getattr__(name: str):
    if name == "app":
        from souk.cli.main import app

        return app
    raise AttributeError(name)
