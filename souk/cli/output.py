"""Console helpers shared by commands: human output on stderr/stdout, JSON as the last stdout line,
and how values look on a terminal (entities decoded, numbers rounded, estimates marked)."""
from __future__ import annotations

import json
import math
import re
import sys
from typing import TYPE_CHECKING, Any

from souk.limits import EXACT_DISTINCT_LIMIT
from souk.progress import progress_bar

if TYPE_CHECKING:
    from rich.console import Console

    console: Console
    err_console: Console

__all__ = ["console", "emit_json", "err_console", "facet_line", "format_number", "plain_text", "progress_bar"]


def __getattr__(name: str) -> Any:
    """`console` and `err_console`, made on first use: rich's imports (50-150 ms) stay out of `souk search --json`."""
    if name == "err_console":
        from souk import progress

        return progress.err_console
    if name != "console":
        raise AttributeError(f"module 'souk.cli.output' has no attribute {name!r}")
    from rich.console import Console

    made = globals()["console"] = Console()
    return made


def emit_json(data: dict[str, Any]) -> None:
    """Print one JSON object as a single line on stdout (the last line a command prints); NaN and
    infinities, which JSON cannot hold, become null."""
    try:
        text = json.dumps(data, ensure_ascii=False, default=_default, allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(data), ensure_ascii=False, default=_default, allow_nan=False)
    sys.stdout.write(_LINE_BREAKS.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + "\n")
    sys.stdout.flush()


# characters that str.splitlines() and JavaScript treat as line breaks but JSON leaves raw: escaped so
# that the object stays one line for every reader
_LINE_BREAKS = re.compile("[\x85\u2028\u2029]")


def plain_text(value: Any) -> str:
    """A catalog value for the terminal: HTML entities decoded (`&amp;` -> `&`), rich markup escaped."""
    import html  # (its entity table: not for a `--json` search)

    from rich.markup import escape

    return escape(html.unescape(str(value)))


def format_number(value: Any) -> str:
    """A statistic for people: integers plain, others to 2 decimals (4 significant digits below 1)."""
    if value is None:
        return "-"
    x = float(value)
    if not math.isfinite(x):
        return str(x)
    if x.is_integer() and abs(x) < 1e15:
        return f"{int(x):,}" if abs(x) >= 10_000 else str(int(x))
    if abs(x) >= 1:
        return f"{x:,.2f}" if abs(x) >= 10_000 else f"{x:.2f}"
    return f"{x:.4g}"


def facet_line(name: str, facet: dict[str, Any]) -> str:
    """One facet as a rich-markup line: `brand (≈1,234 distinct): A (3), B (2)` or `price: min 1, max 20, avg 7.33`.
    A distinct count is marked `≈` when the facet says it is approximate (or, when it does not say,
    when it is above `EXACT_DISTINCT_LIMIT`, where tantivy's count becomes an estimate)."""
    from rich.markup import escape

    if "buckets" in facet:
        distinct = facet.get("distinct", 0)
        approximate = facet.get("approximate", distinct > EXACT_DISTINCT_LIMIT)
        values = ", ".join(f"{plain_text(v)} ({c})" for v, c in facet["buckets"])
        return f"[bold]{escape(name)}[/] ({'≈' if approximate else ''}{format_number(distinct)} distinct): {values}"
    stats = ", ".join(f"{k} {format_number(facet.get(k))}" for k in ("min", "max", "avg"))
    return f"[bold]{escape(name)}[/]: {stats}"


def _finite(o: Any) -> Any:
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def _default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)
