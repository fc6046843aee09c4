"""Export of the event log: JSON lines, or Parquet when pyarrow is installed.

Misuse: exporting to a path inside the index's `events/` directory (it would read its own output).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Iterable

from souk.errors import ConfigError

COLUMNS = ("t", "kind", "search_id", "query", "pipeline", "session", "offset", "total", "shown", "id", "position",
           "filters", "sort", "searched", "did_you_mean", "relaxed", "interleave", "teams")


def write_jsonl(records: Iterable[dict[str, Any]], out: Path | None) -> int:
    """One JSON object a line to `out` (stdout when None); returns the count."""
    n = 0
    fh = open(out, "w", encoding="utf-8") if out is not None else sys.stdout
    try:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
            n += 1
    finally:
        if out is not None:
            fh.close()
    return n


def write_parquet(records: Iterable[dict[str, Any]], out: Path) -> int:
    """A Parquet table with the columns in `COLUMNS` (lists stay lists); ConfigError without pyarrow."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError("--format parquet needs pyarrow: pip install pyarrow (or export --format jsonl)") from None
    rows = list(records)
    columns = {c: [r.get(c) for r in rows] for c in COLUMNS}
    columns["shown"] = [[str(x) for x in v] if isinstance(v, list) else None for v in columns["shown"]]
    columns["teams"] = [[str(x) for x in v] if isinstance(v, list) else None for v in columns["teams"]]
    columns["filters"] = [[str(x) for x in v] if isinstance(v, list) else None for v in columns["filters"]]
    for c in ("query", "pipeline", "session", "search_id", "kind", "id", "sort", "searched", "did_you_mean",
              "interleave"):
        columns[c] = [None if v is None else str(v) for v in columns[c]]
    pq.write_table(pa.table(columns), out)
    return len(rows)


def impressions(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Searches with their clicks and purchases in the impression-log format of `souk clicks learn`
    (`request`, `query`, `shown` in display order, `clicked`, `purchased`, `ts`), searches in log order."""
    searches: dict[str, dict[str, Any]] = {}
    for r in records:
        kind, sid = r.get("kind"), r.get("search_id")
        if kind == "search" and isinstance(sid, str) and isinstance(r.get("shown"), list) and not r.get("offset"):
            searches[sid] = {"request": sid, "query": r.get("query", ""), "shown": [str(x) for x in r["shown"]],
                             "clicked": [], "purchased": [], "ts": r.get("t")}
        elif kind in ("click", "cart", "purchase") and sid in searches:
            doc = str(r.get("id"))
            if doc in searches[sid]["shown"]:
                target = searches[sid]["purchased" if kind == "purchase" else "clicked"]
                if doc not in target:
                    target.append(doc)
    for s in searches.values():  # a purchase implies the click that led to it
        s["clicked"] += [d for d in s["purchased"] if d not in s["clicked"]]
    return list(searches.values())
