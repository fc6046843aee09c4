"""Tagged sentences for the tagger: reading `{"chars": [...], "tags": [...]}` JSONL (BIO tags) with
errors that name file:line, and the character units the tagger reads.

Characters are normalized the same way at training and inference (`char_key`: NFKC so full-width
becomes half-width, case folding, traditional -> simplified); whitespace is not a unit, so a query
`iphone 15 手机壳` reads like a title `iphone15手机壳`.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from souk.errors import DatasetError
from souk.query.entities.text import char_key

TAG = re.compile(r"O|[BI]-[A-Za-z0-9_]+")


@dataclass(frozen=True)
class TaggedSentence:
    chars: list[str]
    tags: list[str]


def unit(char: str) -> str:
    """The tagger's unit for one training character: its normalized form when that is one character."""
    key = char_key(char)
    return key if len(key) == 1 else char


def read_tagged(path: str | Path) -> list[TaggedSentence]:
    """Every sentence of a BIO-tagged JSONL file; DatasetError names file:line of the first bad one."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file (expected JSONL lines {{\"chars\": [...], \"tags\": [...]}})")
    sentences = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DatasetError(f"{where}: not valid JSON ({e.msg})") from None
            chars, tags = (row.get("chars"), row.get("tags")) if isinstance(row, dict) else (None, None)
            if not isinstance(chars, list) or not isinstance(tags, list):
                raise DatasetError(f"{where}: expected an object with lists \"chars\" and \"tags\"")
            if len(chars) != len(tags):
                raise DatasetError(f"{where}: {len(chars)} chars but {len(tags)} tags")
            if not chars:
                continue
            if not all(isinstance(c, str) and len(c) == 1 for c in chars):
                raise DatasetError(f"{where}: every item of \"chars\" must be one character")
            bad = next((t for t in tags if not (isinstance(t, str) and TAG.fullmatch(t))), None)
            if bad is not None:
                raise DatasetError(f"{where}: tag {bad!r} is not BIO (expected O, B-TYPE or I-TYPE)")
            sentences.append(TaggedSentence([unit(c) for c in chars], tags))
    if not sentences:
        raise DatasetError(f"{path}: no tagged sentences")
    return sentences
