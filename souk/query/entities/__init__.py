"""Entities in query text: brands, product types, model numbers, ... that can become filters or boosts.

Two recognizers return the same `Entity` (a typed span of the query with a normalized value):
`Gazetteer` finds known catalog values (keyword fields of an index, plus aliases), and `Tagger`,
a trained BiLSTM-CRF, finds entities no catalog lists. `entity_scores` measures either against
gold BIO tags. torch is imported only when a tagger is loaded or trained.
"""
from souk.query.entities.entity import Entity, bio_spans
from souk.query.entities.gazetteer import Gazetteer
from souk.query.entities.metrics import EntityScores, entity_scores, span_scores
from souk.query.entities.tagger import Tagger

__all__ = ["Entity", "EntityScores", "Gazetteer", "Tagger", "bio_spans", "entity_scores", "span_scores"]
