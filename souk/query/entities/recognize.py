"""Both recognizers together: catalog values first, the tagger for what no catalog lists."""
from __future__ import annotations

from typing import TYPE_CHECKING

from souk.query.entities.entity import Entity

if TYPE_CHECKING:
    from souk.query.entities.gazetteer import Gazetteer
    from souk.query.entities.tagger import Tagger


def recognize(text: str, gazetteer: "Gazetteer | None" = None, tagger: "Tagger | None" = None,
              min_score: float = 0.0) -> list[Entity]:
    """Gazetteer matches (exact catalog values, safe as filters), plus tagger entities scoring at
    least `min_score` that overlap no gazetteer match; sorted by position."""
    found = gazetteer.match(text) if gazetteer is not None else []
    if tagger is not None:
        taken = [(e.start, e.end) for e in found]
        found += [e for e in tagger.tag(text)
                  if e.score >= min_score and all(e.end <= s or e.start >= t for s, t in taken)]
    return sorted(found, key=lambda e: (e.start, e.end, e.source))
