"""Labeled queries for intent training: a TSV file of `text<TAB>intent`, or a catalog's own categories.

`OOS` ("oos") marks an out-of-scope query. A catalog without labeled queries still gets category
prediction: each document's titles become pseudo-queries labeled with its category field.
Misuse: training on pseudo-queries and reporting the numbers as query accuracy (titles are not queries).
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from souk.analysis.values import PATH_JOINER
from souk.errors import DatasetError

if TYPE_CHECKING:
    from souk.index.searcher import Searcher

OOS = "oos"
HEADER = ("text", "intent")


@dataclass(frozen=True)
class LabeledQueries:
    """Parallel lists of query texts and their labels (`OOS` for out of scope); `source` names the origin."""

    texts: list[str]
    labels: list[str]
    source: str = ""

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise ValueError(f"{len(self.texts)} texts but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def intents(self) -> list[str]:
        """The in-scope labels, sorted."""
        return sorted(set(self.labels) - {OOS})

    @property
    def oos_count(self) -> int:
        return sum(1 for label in self.labels if label == OOS)

    def counts(self) -> dict[str, int]:
        return dict(Counter(self.labels))


def read_labeled_tsv(path: str | Path) -> LabeledQueries:
    """Read `text<TAB>intent` lines (UTF-8; an optional `text<TAB>intent` header; blank lines skipped).

    A line without exactly one tab, or with an empty text or label, raises DatasetError naming file:line."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DatasetError(f"{path}: is a directory, expected a TSV file of text<TAB>intent lines") from None
    texts, labels = [], []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        try:
            row = line.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError:
            raise DatasetError(f"{path}:{number}: not UTF-8 text") from None
        if not row.strip():
            continue
        cells = row.split("\t")
        if len(cells) != 2:
            raise DatasetError(f"{path}:{number}: expected text<TAB>intent, found {len(cells) - 1} tabs")
        text, label = cells[0].strip(), cells[1].strip()
        if number == 1 and (text.lower(), label.lower()) == HEADER:
            continue
        if not text or not label:
            raise DatasetError(f"{path}:{number}: empty {'text' if not text else 'intent'}")
        texts.append(text)
        labels.append(label)
    if not texts:
        raise DatasetError(f"{path}: no labeled queries (expected text<TAB>intent lines)")
    return LabeledQueries(texts, labels, source=str(path))


def catalog_queries(searcher: Searcher, label_field: str, text_fields: Sequence[str] | None = None,
                    level: int = 1) -> LabeledQueries:
    """Pseudo-queries from an index: each document's `text_fields` values (default: the text fields with
    the highest boost, usually the titles) labeled with its `label_field` value; documents without a
    label are skipped, a list-valued label contributes its first value. A hierarchy field's label is
    its path down to `level` (1: the top category)."""
    if level < 1:
        raise DatasetError(f"level must be >= 1 (1 is the top category), got {level}")
    from souk.index.store import SOURCE

    schema = searcher.schema
    schema.field(label_field, kinds=("keyword", "text", "stored"))  # ConfigError names the fields there are
    if text_fields:
        fields = [schema.field(name, kinds=("text", "stored")).name for name in text_fields]
    else:
        candidates = [f for f in schema.text_fields if not f.copy_from and f.name != label_field]
        if not candidates:
            raise DatasetError("the index has no text field to take pseudo-queries from; name one with text_fields")
        top = max(f.boost for f in candidates)
        fields = [f.name for f in candidates if f.boost == top]
    for name in [label_field, *fields]:
        if not schema.fields[name].stored:
            raise DatasetError(f"field {name!r} is not stored in the index, so its values cannot be read back")
    texts, labels = [], []
    for raw in searcher.stored_bytes(SOURCE)[1]:
        doc = json.loads(raw)
        label = doc.get(label_field)
        if isinstance(label, list):
            label = label[0] if label else None
        if label is not None and schema.fields[label_field].hierarchy:
            label = PATH_JOINER.join(str(label).split(PATH_JOINER)[:level])
        if label is None or not str(label).strip():
            continue
        for name in fields:
            values = doc.get(name)
            for value in values if isinstance(values, list) else [values]:
                if isinstance(value, str) and value.strip():
                    texts.append(value.strip())
                    labels.append(str(label).strip())
    if not texts:
        raise DatasetError(f"no document of the index has both a {label_field!r} value and text in {', '.join(fields)}")
    return LabeledQueries(texts, labels, source=f"{searcher.path}:{label_field}<-{'+'.join(fields)}")
