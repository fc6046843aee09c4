"""Console helpers shared by commands: human output on stderr/stdout, JSON as the last stdout line."""
from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

from souk.progress import err_console, progress_bar

__all__ = ["console", "emit_json", "err_console", "progress_bar"]
console = Console()


def emit_json(data: dict[str, Any]) -> None:
    """Print one JSON object as a single line on stdout (the last line a command prints)."""
    sys.stdout.write(json.dumps(data, ensure_ascii=False, default=_default) + "\n")
    sys.stdout.flush()


def _default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)
