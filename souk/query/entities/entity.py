"""The `Entity` a recognizer finds in a query, and BIO tags <-> entity spans."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, Sequence

Source = Literal["gazetteer", "tagger"]


@dataclass(frozen=True)
class Entity:
    """A typed span of the query text.

    `start`/`end` index the original query string (`text == query[start:end]`); `value` is the
    normalized form to filter or boost on (for the gazetteer: the catalog's own keyword value);
    `score` is 1.0 for a gazetteer match and the tagger's confidence (0..1) otherwise.
    """

    type: str
    start: int
    end: int
    value: str
    text: str
    source: Source
    score: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bio_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """(type, start, end) of each entity in a BIO tag sequence, the way conlleval/seqeval read it.

    An `I-X` that does not continue an `X` entity starts a new one (lenient reading), so a model
    that forgets a `B-` is not rewarded with a longer span.
    """
    spans: list[tuple[str, int, int]] = []
    kind, start = None, 0
    for i, tag in enumerate(tags):
        prefix, _, label = tag.partition("-")
        if kind is not None and not (prefix == "I" and label == kind):
            spans.append((kind, start, i))
            kind = None
        if prefix == "B" or (prefix == "I" and kind is None):
            kind, start = label, i
    if kind is not None:
        spans.append((kind, start, len(tags)))
    return spans
