"""Catalog readers: JSONL, JSON arrays, CSV/TSV and BEIR directories, as numbered records.

Each reader yields `Record`s; a record that cannot be decoded (bad JSON, invalid UTF-8, a line or
field over the limits of `souk.limits`, nesting too deep) carries an `error` instead of `data`, so
validation can report it with its line number instead of stopping. Problems with the file as a
whole (not a regular file, a bad CSV header) raise `DocumentError` before any record is read.
Misuse: opening catalog paths yourself; `read_catalog` refuses devices and FIFOs that never end.
"""
from __future__ import annotations

import csv
import errno
import json
import math
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from souk.errors import DocumentError
from souk.limits import MAX_FIELD_CHARS, MAX_JSON_ARRAY_BYTES, MAX_LINE_BYTES, MAX_NESTING, describe_bytes
from souk.schema import loads_json

FORMATS = ("jsonl", "json", "csv", "tsv", "beir")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
_HEADER_MAX_CHARS = 64
_COUNT_CHUNK = 1 << 20


@dataclass
class Record:
    """One raw record: `line` is 1-based (line in the file, or position in a JSON array)."""

    line: int
    data: dict[str, Any] | None
    error: str | None = None


def detect_format(path: Path) -> str:
    """The catalog format from the path: a directory with corpus.jsonl is BEIR, else the suffix."""
    if path.is_dir():
        if (path / "corpus.jsonl").exists():
            return "beir"
        raise DocumentError(f"{path} is a directory without corpus.jsonl; give a file or a BEIR directory")
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("jsonl", "ndjson"):
        return "jsonl"
    if suffix in FORMATS:
        return suffix
    raise DocumentError(f"{path}: unknown catalog format {suffix!r}; use one of .jsonl .json .csv .tsv or a BEIR dir")


def catalog_file(path: str | Path, fmt: str | None = None) -> tuple[Path, str]:
    """The regular file holding the records of the catalog at `path`, and its format.

    Refuses what is not a regular file once symlinks are followed (devices such as /dev/zero, FIFOs,
    sockets), dangling symlinks and symlink loops, each with a one-line `DocumentError`.
    """
    path = Path(path)
    if not os.path.lexists(path):
        raise DocumentError(f"catalog {path} does not exist")
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise DocumentError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    file = path / "corpus.jsonl" if fmt == "beir" else path
    try:
        st = os.stat(file)
    except OSError as e:
        what = (
            "a symlink loop" if e.errno == errno.ELOOP else "a dangling symlink" if os.path.islink(file) else e.strerror
        )
        raise DocumentError(f"catalog {file} cannot be read: {what}") from None
    if not stat.S_ISREG(st.st_mode):
        raise DocumentError(f"catalog {file} is {_file_kind(st.st_mode)}, not a regular file; give a catalog file")
    if not os.access(file, os.R_OK):
        raise DocumentError(f"catalog {file} cannot be read: permission denied")
    return file, fmt


def read_catalog(path: str | Path, fmt: str | None = None, columns: Sequence[str] | None = None) -> Iterator[Record]:
    """Records of the catalog at `path` (format detected when `fmt` is None).

    `columns` names the columns of a CSV/TSV file that has no header row (a first row equal to
    `columns` is taken as the header and skipped). The file is checked now; records come lazily.
    """
    file, fmt = catalog_file(path, fmt)
    if columns is not None:
        if fmt not in ("csv", "tsv"):
            raise DocumentError(f"{path}: column names apply to CSV/TSV catalogs only, not {fmt}")
        columns = _check_columns(list(columns), "column names")
    if fmt in ("beir", "jsonl"):
        return _jsonl(file)
    if fmt == "json":
        return _json_array(file)
    return _delimited(file, "\t" if fmt == "tsv" else ",", columns)


def estimate_records(path: str | Path) -> int | None:
    """Roughly how many records the catalog holds (lines of a JSONL/CSV file), for progress bars."""
    try:
        file, fmt = catalog_file(path)
    except DocumentError:
        return None
    if fmt == "json":
        return None
    lines, last = 0, b"\n"
    with file.open("rb") as fh:
        while chunk := fh.read(_COUNT_CHUNK):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    lines += last != b"\n"
    return max(lines - (1 if fmt in ("csv", "tsv") else 0), 0)


# ---- JSON ------------------------------------------------------------------------------------------
def _jsonl(path: Path) -> Iterator[Record]:
    with path.open("rb") as fh:
        for lineno, raw in enumerate(_capped_lines(fh), 1):
            if raw is None:
                yield Record(lineno, None, f"line longer than {describe_bytes(MAX_LINE_BYTES)} (the line limit)")
                continue
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")  # a byte-order mark may open the file
            except UnicodeDecodeError as e:
                yield Record(lineno, None, f"invalid UTF-8 at byte {e.start}")
                continue
            obj, error = _decode_json(text, raw.count(b"[") + raw.count(b"{"))
            if error:
                yield Record(lineno, None, error)
            elif not isinstance(obj, dict):
                yield Record(lineno, None, f"expected a JSON object, got {type(obj).__name__}")
            else:
                yield Record(lineno, obj)


def _capped_lines(fh) -> Iterator[bytes | None]:
    """Lines of a binary file; a line over MAX_LINE_BYTES is skipped whole and yields None."""
    while raw := fh.readline(MAX_LINE_BYTES + 1):
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while (rest := fh.readline(_COUNT_CHUNK)) and not rest.endswith(b"\n"):
                pass
            yield None
        else:
            yield raw


def _decode_json(text: str, openers: int) -> tuple[Any, str | None]:
    """Parsed value or an error; `openers` (count of [ and {) lets shallow lines skip the depth walk."""
    try:
        obj = loads_json(text)
    except json.JSONDecodeError as e:
        return None, f"invalid JSON: {e.msg} (column {e.colno})"
    except RecursionError:
        return None, f"nested deeper than {MAX_NESTING} levels (the nesting limit)"
    if openers > MAX_NESTING and _too_deep(obj):
        return None, f"nested deeper than {MAX_NESTING} levels (the nesting limit)"
    return obj, None


def _too_deep(obj: Any, limit: int = MAX_NESTING) -> bool:
    """Whether objects/arrays nest more than `limit` levels (iterative: no recursion limit to hit)."""
    stack = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def _json_array(path: Path) -> Iterator[Record]:
    if path.stat().st_size > MAX_JSON_ARRAY_BYTES:
        raise DocumentError(f"{path}: a JSON array larger than {describe_bytes(MAX_JSON_ARRAY_BYTES)} (the limit for "
                            ".json catalogs, read whole); convert it to JSONL, one record per line")
    try:
        data = loads_json(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise DocumentError(f"{path}: invalid UTF-8 at byte {e.start}") from None
    except json.JSONDecodeError as e:
        raise DocumentError(f"{path}: invalid JSON at line {e.lineno}: {e.msg}") from None
    except RecursionError:
        raise DocumentError(f"{path}: nested deeper than {MAX_NESTING} levels (the nesting limit)") from None
    if isinstance(data, dict):
        data = next((v for v in data.values() if isinstance(v, list)), None)
    if not isinstance(data, list):
        raise DocumentError(f"{path}: expected a JSON array of objects (or an object holding one)")
    for i, obj in enumerate(data, 1):
        if not isinstance(obj, dict):
            yield Record(i, None, f"expected a JSON object, got {type(obj).__name__}")
        elif _too_deep(obj):
            yield Record(i, None, f"nested deeper than {MAX_NESTING} levels (the nesting limit)")
        else:
            yield Record(i, obj)


# ---- CSV / TSV -------------------------------------------------------------------------------------
class _LineTooLong(Exception):
    pass


class _Lines:
    """Text lines of a file for `csv.reader`, counting them; an over-long line raises `_LineTooLong`
    once (and is skipped) instead of being read into memory whole."""

    def __init__(self, fh):
        self.fh = fh
        self.lineno = 0

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> str:
        line = self.fh.readline(MAX_LINE_BYTES + 1)
        if not line:
            raise StopIteration
        self.lineno += 1
        if len(line) > MAX_LINE_BYTES and not line.endswith("\n"):
            while (rest := self.fh.readline(_COUNT_CHUNK)) and not rest.endswith("\n"):
                pass
            raise _LineTooLong
        return line


def _delimited(path: Path, delimiter: str, columns: list[str] | None) -> Iterator[Record]:
    csv.field_size_limit(MAX_FIELD_CHARS)
    with path.open("r", encoding="utf-8", errors="surrogateescape", newline="") as fh:
        lines = _Lines(fh)
        reader = csv.reader(lines, delimiter=delimiter)
        header = columns
        for row, error in _rows(reader, lines):
            if error:
                yield Record(lines.lineno, None, error)
                continue
            if not any(cell.strip() for cell in row):
                continue
            if header is None:
                header = _header(row, path)
                continue
            if columns is not None and lines.lineno == 1 and [c.strip().lstrip("\ufeff") for c in row] == columns:
                continue  # the file has the header that --columns names
            if any(0xDC80 <= ord(c) <= 0xDCFF for cell in row for c in cell):
                yield Record(lines.lineno, None, "invalid UTF-8")
            elif len(row) != len(header):
                yield Record(lines.lineno, None, f"expected {len(header)} columns, got {len(row)}")
            else:
                yield Record(lines.lineno, dict(zip(header, row)))


def _rows(reader, lines: _Lines) -> Iterator[tuple[list[str], str | None]]:
    """Rows of a csv reader, turning its errors (field over the limit, NUL bytes) into row errors."""
    while True:
        try:
            yield next(reader), None
        except StopIteration:
            return
        except _LineTooLong:
            yield [], f"line longer than {describe_bytes(MAX_LINE_BYTES)} (the line limit)"
        except csv.Error as e:
            if "field larger than field limit" in str(e):
                yield [], f"a field is longer than {MAX_FIELD_CHARS:,} characters (the field size limit)"
            else:
                yield [], f"unreadable CSV row: {e}"


def _header(row: list[str], path: Path) -> list[str]:
    names = [cell.strip().lstrip("\ufeff").strip() for cell in row]
    if any(0xDC80 <= ord(c) <= 0xDCFF for name in names for c in name):
        raise DocumentError(f"{path}: the header row is not valid UTF-8")
    for i, name in enumerate(names, 1):
        if _looks_like_data(name):
            raise DocumentError(
                f"{path}: the first row looks like data, not column names (column {i} is {name[:40]!r}); "
                "name the columns with --columns a,b,c or `[catalog] columns = [...]` in the schema")
    return _check_columns(names, f"{path}: the header")


def _check_columns(names: list[str], where: str) -> list[str]:
    seen: dict[str, int] = {}
    names = [n.strip() if isinstance(n, str) else n for n in names]
    for i, name in enumerate(names, 1):
        if not isinstance(name, str) or not name:
            raise DocumentError(f"{where}: column {i} has no name; name the columns with --columns a,b,c")
        if name in seen:
            raise DocumentError(f"{where}: column {name!r} appears twice (columns {seen[name]} and {i}); "
                                "rename one or name the columns with --columns a,b,c")
        seen[name] = i
    return names


def _looks_like_data(cell: str) -> bool:
    """A header cell that is a number, a date, a URL or a long text is more likely a value than a name."""
    if len(cell) > _HEADER_MAX_CHARS or "://" in cell or _DATE.match(cell):
        return True
    try:
        return math.isfinite(float(cell))
    except ValueError:
        return False


def _file_kind(mode: int) -> str:
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "not a regular file"
