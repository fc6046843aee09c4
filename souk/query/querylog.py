"""What do people search for? A query log read into counts.

Accepted files: plain text with one query a line, optionally `query<TAB>count` (.txt, .tsv), or JSON
lines with a `text` (or `query`) key and an optional `count` (.jsonl, e.g. a BEIR queries.jsonl).
Counts are of the raw query strings; consumers normalize.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from souk.errors import DatasetError


def read_query_log(path: str | Path, limit: int | None = None) -> Counter[str]:
    """Query -> count from a log file; a malformed line raises DatasetError naming the line."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"query log {path} does not exist")
    counts: Counter[str] = Counter()
    with path.open(encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, 1):
            if limit is not None and n > limit:
                break
            line = line.rstrip("\n")
            if not line.strip():
                continue
            if path.suffix == ".jsonl":
                text, count = _json_line(line, path, n)
            else:
                text, _, tail = line.partition("\t")
                count = _count(tail, path, n) if tail.strip() else 1
            text = " ".join(text.split())
            if text:
                counts[text] += count
    return counts


def _json_line(line: str, path: Path, n: int) -> tuple[str, int]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError:
        raise DatasetError(f"{path}:{n}: not valid JSON") from None
    text = obj.get("text", obj.get("query")) if isinstance(obj, dict) else None
    if not isinstance(text, str):
        raise DatasetError(f"{path}:{n}: expected an object with a 'text' or 'query' string")
    return text, _count(obj.get("count", 1), path, n)


def _count(value, path: Path, n: int) -> int:
    try:
        count = int(value)
    except (TypeError, ValueError):
        raise DatasetError(f"{path}:{n}: count {value!r} is not a whole number") from None
    if count < 0:
        raise DatasetError(f"{path}:{n}: count must be >= 0")
    return count
