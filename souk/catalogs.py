"""Catalog readers: JSONL, JSON arrays, CSV/TSV and BEIR directories, as numbered records.

Each reader yields `Record`s; a record that cannot be decoded (bad JSON, invalid UTF-8) carries an
`error` instead of `data`, so validation can report it with its line number instead of stopping.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from souk.errors import DocumentError

FORMATS = ("jsonl", "json", "csv", "tsv", "beir")


@dataclass
class Record:
    """One raw record: `line` is 1-based (line in the file, or position in a JSON array)."""

    line: int
    data: dict[str, Any] | None
    error: str | None = None


def detect_format(path: Path) -> str:
    """The catalog format from the path: a directory with corpus.jsonl is BEIR, else the suffix."""
    if path.is_dir():
        if (path / "corpus.jsonl").is_file():
            return "beir"
        raise DocumentError(f"{path} is a directory without corpus.jsonl; give a file or a BEIR directory")
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("jsonl", "ndjson"):
        return "jsonl"
    if suffix in FORMATS:
        return suffix
    raise DocumentError(f"{path}: unknown catalog format {suffix!r}; use one of .jsonl .json .csv .tsv or a BEIR dir")


def read_catalog(path: str | Path, fmt: str | None = None) -> Iterator[Record]:
    """Records of the catalog at `path` (format detected when `fmt` is None)."""
    path = Path(path)
    if not path.exists():
        raise DocumentError(f"catalog {path} does not exist")
    fmt = fmt or detect_format(path)
    if fmt == "beir":
        yield from _jsonl(path / "corpus.jsonl")
    elif fmt == "jsonl":
        yield from _jsonl(path)
    elif fmt == "json":
        yield from _json_array(path)
    elif fmt in ("csv", "tsv"):
        yield from _delimited(path, "\t" if fmt == "tsv" else ",")
    else:
        raise DocumentError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")


def _jsonl(path: Path) -> Iterator[Record]:
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield Record(lineno, None, f"invalid UTF-8 at byte {e.start}")
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                yield Record(lineno, None, f"invalid JSON: {e.msg} (column {e.colno})")
                continue
            if not isinstance(obj, dict):
                yield Record(lineno, None, f"expected a JSON object, got {type(obj).__name__}")
                continue
            yield Record(lineno, obj)


def _json_array(path: Path) -> Iterator[Record]:
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise DocumentError(f"{path}: invalid UTF-8 at byte {e.start}") from e
    except json.JSONDecodeError as e:
        raise DocumentError(f"{path}: invalid JSON at line {e.lineno}: {e.msg}") from e
    if isinstance(data, dict):
        data = next((v for v in data.values() if isinstance(v, list)), None)
    if not isinstance(data, list):
        raise DocumentError(f"{path}: expected a JSON array of objects (or an object holding one)")
    for i, obj in enumerate(data, 1):
        if isinstance(obj, dict):
            yield Record(i, obj)
        else:
            yield Record(i, None, f"expected a JSON object, got {type(obj).__name__}")


def _delimited(path: Path, delimiter: str) -> Iterator[Record]:
    raw = path.read_bytes()
    text = raw.decode("utf-8", errors="surrogateescape")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader, None)
    if not header:
        return
    header = [h.strip().lstrip("\ufeff") for h in header]
    for row in reader:
        lineno = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if any(0xDC80 <= ord(c) <= 0xDCFF for cell in row for c in cell):
            yield Record(lineno, None, "invalid UTF-8")
            continue
        if len(row) != len(header):
            yield Record(lineno, None, f"expected {len(header)} columns, got {len(row)}")
            continue
        yield Record(lineno, dict(zip(header, row)))
