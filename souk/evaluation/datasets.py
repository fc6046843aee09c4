"""Judged query sets: BEIR directories, TREC qrels and JSONL query files.

A `Dataset` holds only the queries that can be evaluated (at least one judgment with grade >= 1);
the others are dropped and counted in `skipped`, so every mean souk reports is over the same set.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from souk.errors import DatasetError

Qrels = dict[str, dict[str, int]]
"""qid -> docid -> integer grade; 0 (or below) means judged not relevant."""


@dataclass(frozen=True)
class Dataset:
    """Queries and graded judgments of one split.

    Invariant: `queries` and `qrels` have the same keys, and each query has a judgment >= 1.
    """

    queries: dict[str, str]
    qrels: Qrels
    skipped: int = 0
    name: str = ""
    split: str = ""
    skipped_ids: tuple[str, ...] = field(default=(), repr=False)

    @classmethod
    def from_parts(
        cls, queries: Mapping[str, str], qrels: Qrels, name: str = "", split: str = ""
    ) -> Dataset:
        """Keep the judged queries that have a relevant document; count the rest as skipped.

        Raises DatasetError when a judged query has no text.
        """
        missing = [qid for qid in qrels if qid not in queries]
        if missing:
            raise DatasetError(
                f"{len(missing)} judged queries have no text (first: {', '.join(missing[:5])}); "
                "check that the queries file belongs to these qrels"
            )
        relevant = {qid: any(g >= 1 for g in judged.values()) for qid, judged in qrels.items()}
        kept = [qid for qid, has in relevant.items() if has]
        skipped = tuple(qid for qid, has in relevant.items() if not has)
        return cls(
            queries={qid: queries[qid] for qid in kept},
            qrels={qid: dict(qrels[qid]) for qid in kept},
            skipped=len(skipped),
            name=name,
            split=split,
            skipped_ids=skipped,
        )

    def __len__(self) -> int:
        return len(self.queries)


def load_beir(directory: str | Path, split: str) -> Dataset:
    """Load `queries.jsonl` and `qrels/<split>.tsv` of a BEIR directory."""
    root = Path(directory)
    if not root.is_dir():
        raise DatasetError(f"dataset directory {root} does not exist")
    qrels_path = root / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        available = sorted(p.stem for p in (root / "qrels").glob("*.tsv"))
        raise DatasetError(
            f"{root} has no qrels for split {split!r}; available splits: "
            f"{', '.join(available) or 'none (no qrels/*.tsv)'}"
        )
    queries = load_jsonl_queries(root / "queries.jsonl")
    return Dataset.from_parts(queries, load_beir_qrels(qrels_path), name=root.name, split=split)


def load_beir_qrels(path: str | Path) -> Qrels:
    """Read a BEIR qrels TSV: optional header `query-id corpus-id score`, then one judgment a line."""
    return _read_qrels(Path(path), columns=3, header="query-id")


def load_trec_qrels(path: str | Path) -> Qrels:
    """Read TREC qrels: `qid iteration docid grade`, whitespace separated."""
    return _read_qrels(Path(path), columns=4, header=None)


def _read_qrels(path: Path, columns: int, header: str | None) -> Qrels:
    qrels: Qrels = {}
    for lineno, line in numbered_lines(path):
        parts = line.split()
        if lineno == 1 and header is not None and parts[0] == header:
            continue
        if len(parts) != columns:
            raise DatasetError(
                f"{path}:{lineno}: expected {columns} columns "
                f"({'qid docid grade' if columns == 3 else 'qid iter docid grade'}), got {len(parts)}"
            )
        qid, docid, grade = parts[0], parts[-2], parts[-1]
        qrels.setdefault(qid, {})[docid] = _grade(path, lineno, grade)
    if not qrels:
        raise DatasetError(f"{path} holds no judgments")
    return qrels


MIN_GRADE, MAX_GRADE = -10, 100  # TREC collections grade -2 (spam) to 4; gains 2**grade stay finite
_GRADE = re.compile(r"^[+-]?[0-9]{1,4}$")


def _grade(path: Path, lineno: int, grade: str) -> int:
    """A judgment's grade: a plain ASCII integer in MIN_GRADE..MAX_GRADE, else DatasetError naming the line."""
    if not _GRADE.match(grade):
        raise DatasetError(f"{path}:{lineno}: grade {grade[:20]!r} is not an integer") from None
    value = int(grade)
    if not MIN_GRADE <= value <= MAX_GRADE:
        raise DatasetError(f"{path}:{lineno}: grade {value} is outside {MIN_GRADE}..{MAX_GRADE}; "
                           "relevance grades are small integers (0 = not relevant)")
    return value


def load_jsonl_queries(path: str | Path) -> dict[str, str]:
    """Read queries, one JSON object a line with `_id` (or `id`) and `text` (or `query`)."""
    path = Path(path)
    queries: dict[str, str] = {}
    for lineno, line in numbered_lines(path):
        record = _json_object(path, lineno, line)
        qid = record.get("_id", record.get("id"))
        text = record.get("text", record.get("query"))
        if qid is None or not isinstance(text, str):
            raise DatasetError(f'{path}:{lineno}: a query needs "_id" and a "text" string')
        queries[str(qid)] = text
    return queries


def iter_beir_corpus(directory: str | Path) -> Iterator[dict]:
    """Yield the documents of `corpus.jsonl` as dicts (`_id`, `title`, `text`, ...)."""
    path = Path(directory) / "corpus.jsonl"
    for lineno, line in numbered_lines(path):
        record = _json_object(path, lineno, line)
        if "_id" not in record:
            raise DatasetError(f'{path}:{lineno}: a document needs an "_id"')
        yield record


def corpus_titles(directory: str | Path, ids: set[str], width: int = 60) -> dict[str, str]:
    """Short labels (title, else the start of the text) of the given documents, for case tables."""
    out: dict[str, str] = {}
    if not (Path(directory) / "corpus.jsonl").is_file():
        return out
    for doc in iter_beir_corpus(directory):
        if doc["_id"] in ids:
            label = (doc.get("title") or doc.get("text") or "").strip()
            out[doc["_id"]] = label if len(label) <= width else label[: width - 1] + "…"
    return out


def numbered_lines(path: Path, what: str = "") -> Iterator[tuple[int, str]]:
    """Non-blank lines with their 1-based numbers; DatasetError when the file (`what`, e.g. "click log")
    is missing or a line is not UTF-8."""
    if not path.is_file():
        raise DatasetError(f"{what + ' ' if what else ''}{path} does not exist")
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DatasetError(f"{path}:{lineno}: not UTF-8 (byte {e.start} of the line)") from None
            if line.strip():
                yield lineno, line.rstrip("\r\n") if line.endswith("\r\n") else line.rstrip("\n")


def _json_object(path: Path, lineno: int, line: str) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise DatasetError(f"{path}:{lineno}: not valid JSON ({error.msg})") from None
    except (ValueError, RecursionError) as error:  # an integer past Python's 4300 digits, deep nesting
        raise DatasetError(f"{path}:{lineno}: not a readable JSON object ({type(error).__name__})") from None
    if not isinstance(record, dict):
        raise DatasetError(f"{path}:{lineno}: expected a JSON object")
    return record
