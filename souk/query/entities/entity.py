"""BIO tags -> entity spans, and the `Entity` recognizers return (the query plan's own: `start`/`end`
index the query as typed, `value` is the normalized form to filter or boost on, `score` is 1.0 for a
gazetteer match and the tagger's mean marginal probability of the span's tags otherwise)."""
from __future__ import annotations

from typing import Sequence

from souk.query.plan import Entity

__all__ = ["Entity", "bio_spans"]


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
