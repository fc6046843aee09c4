"""Runs: ranked (docid, score) lists per query, and the TREC run file format.

A TREC run line is `qid Q0 docid rank score tag`. Like trec_eval, souk ignores the rank column and
orders a query's documents by score descending, ties by docid descending (see `trec_order`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from souk.errors import DatasetError

Run = dict[str, list[tuple[str, float]]]
"""qid -> [(docid, score), ...]; order in the list carries no meaning, scores do."""


def trec_order(ranked: list[tuple[str, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Docids and scores sorted the way trec_eval sorts them: score desc, then docid desc."""
    if not ranked:
        return np.array([], dtype=str), np.array([], dtype=np.float64)
    docids, scores = zip(*ranked)
    docs = np.asarray(docids, dtype=str)
    values = np.asarray(scores, dtype=np.float64)
    order = np.lexsort((docs, values))[::-1]
    return docs[order], values[order]


def sort_run(run: Run, depth: int | None = None) -> Run:
    """A copy of `run` in trec_eval order, each query cut to `depth` documents when given."""
    out: Run = {}
    for qid, ranked in run.items():
        docs, scores = trec_order(ranked)
        out[qid] = list(zip(docs[:depth].tolist(), scores[:depth].tolist()))
    return out


def read_run(path: str | Path) -> Run:
    """Read a TREC run file; DatasetError names file:line for malformed or duplicate entries."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"run file {path} does not exist")
    run: Run = {}
    seen: set[tuple[str, str]] = set()
    with path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 6:
                raise DatasetError(
                    f"{path}:{lineno}: expected 6 columns (qid Q0 docid rank score tag), "
                    f"got {len(parts)}"
                )
            qid, _, docid, _, score, _ = parts
            if (qid, docid) in seen:
                raise DatasetError(f"{path}:{lineno}: document {docid} appears twice for query {qid}")
            seen.add((qid, docid))
            try:
                run.setdefault(qid, []).append((docid, float(score)))
            except ValueError:
                raise DatasetError(f"{path}:{lineno}: score {score!r} is not a number") from None
    return run


def write_run(run: Run, path: str | Path, tag: str = "souk") -> Path:
    """Write `run` as a TREC run file in trec_eval order; scores keep every digit (round-trip)."""
    if not tag or any(ch.isspace() for ch in tag):
        raise DatasetError(f"run tag {tag!r} must be one word")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        f"{qid} Q0 {docid} {rank} {score!r} {tag}\n"
        for qid, ranked in sort_run(run).items()
        for rank, (docid, score) in enumerate(ranked, 1)
    ]
    path.write_text("".join(lines), encoding="utf-8")
    return path
