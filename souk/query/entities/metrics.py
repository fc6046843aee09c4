"""Entity-level precision, recall and F1 (exact span and type match, micro-averaged, like seqeval).

Lives beside the recognizers rather than in `souk.evaluation` because training (a lower layer than
evaluation) picks its best epoch with it. Misuse: scoring tag accuracy instead; a tagger that
labels every `O` right and half of every entity wrong scores high on tags and low here.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from souk.query.entities.entity import bio_spans

Span = tuple[str, int, int]


@dataclass(frozen=True)
class EntityScores:
    """Micro-averaged scores over all entities, plus each type's scores and gold support."""

    precision: float
    recall: float
    f1: float
    per_type: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"f1": self.f1, "precision": self.precision, "recall": self.recall, "per_type": self.per_type}


def span_scores(gold: Iterable[Iterable[Span]], predicted: Iterable[Iterable[Span]]) -> EntityScores:
    """Scores of predicted spans against gold spans, sentence by sentence (both iterables aligned)."""
    tp: Counter[str] = Counter()
    n_gold: Counter[str] = Counter()
    n_pred: Counter[str] = Counter()
    for g, p in zip(gold, predicted, strict=True):
        g, p = set(g), set(p)
        for spans, counter in ((g, n_gold), (p, n_pred), (g & p, tp)):
            counter.update(kind for kind, _, _ in spans)
    per_type = {}
    for kind in sorted(n_gold | n_pred):
        prec, rec, f1 = _prf(tp[kind], n_pred[kind], n_gold[kind])
        per_type[kind] = {"precision": prec, "recall": rec, "f1": f1, "support": n_gold[kind]}
    prec, rec, f1 = _prf(sum(tp.values()), sum(n_pred.values()), sum(n_gold.values()))
    return EntityScores(prec, rec, f1, per_type)


def entity_scores(gold_tags: Sequence[Sequence[str]], predicted_tags: Sequence[Sequence[str]]) -> EntityScores:
    """Scores of BIO tag sequences; each predicted sequence must be as long as its gold one."""
    if len(gold_tags) != len(predicted_tags):
        raise ValueError(f"{len(gold_tags)} gold sequences but {len(predicted_tags)} predicted")
    for i, (g, p) in enumerate(zip(gold_tags, predicted_tags)):
        if len(g) != len(p):
            raise ValueError(f"sequence {i}: {len(g)} gold tags but {len(p)} predicted")
    return span_scores(map(bio_spans, gold_tags), map(bio_spans, predicted_tags))


def _prf(tp: int, n_pred: int, n_gold: int) -> tuple[float, float, float]:
    prec = tp / n_pred if n_pred else 0.0
    rec = tp / n_gold if n_gold else 0.0
    return prec, rec, (2 * prec * rec / (prec + rec) if prec + rec else 0.0)
