"""Entities in query text: brands, product types, model numbers, ... that can become filters or boosts.

Two recognizers return the same `Entity` (a typed span of the query with a normalized value):
`Gazetteer` finds known catalog values (keyword fields of an index, plus aliases), and `Tagger`,
a trained BiLSTM-CRF, finds entities no catalog lists. `recognize` runs both (catalog values win
overlaps); `entity_scores` measures a tagger against gold BIO tags. torch is imported only when a
tagger is loaded or trained.
"""
from souk.query.entities.entity import Entity, bio_spans
from souk.query.entities.gazetteer import Gazetteer
from souk.query.entities.metrics import EntityScores, entity_scores, span_scores
from souk.query.entities.recognize import recognize
from souk.query.entities.tagger import Tagger

__all__ = ["Entity", "EntityScores", "Gazetteer", "Tagger", "bio_spans", "entity_scores", "recognize", "span_scores"]
