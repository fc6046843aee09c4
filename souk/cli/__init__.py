"""The `souk` command line: index, search, stats, delete, eval, compare, bench."""
from souk.cli.main import app, main

__all__ = ["app", "main"]
