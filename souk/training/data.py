"""Training data for the neural stages: judged groups from qrels plus recall, and weak groups made
from the corpus itself (a title or a sentence of a document as its pseudo-query).

A `Group` is one query with documents as (title, text), the positive first, and graded labels
scaled to 0..1. Negatives of a judged positive are documents with a lower grade: judged lower, or
unjudged candidates the recall stage returned (hard negatives, possibly a few unjudged positives).
Misuse: mining negatives for dev or held-out queries from their own judgments and then scoring on them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, AbstractSet, Any, Iterator, Sequence

import numpy as np

from souk.evaluation.datasets import Dataset
from souk.ranking.rerank import doc_fields, doc_pair

if TYPE_CHECKING:
    from souk.index.searcher import Searcher

Doc = tuple[str, str]  # (title, text)
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")
_SYNTAX = re.compile(r"[\"+]|(?:(?<=\s)|^)-")


@dataclass
class Group:
    """One query, its documents (positive first) and their labels in 0..1."""

    query: str
    docs: list[Doc]
    labels: list[float]
    ids: list[str] = field(default_factory=list)  # the documents' ids where known (judged groups)


@dataclass
class DocTexts:
    """(title, text) of documents of one searcher snapshot, fetched once and kept."""

    searcher: Searcher
    fields: dict[str, Any] = field(default_factory=dict)
    _cache: dict[str, Doc] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.fields = self.fields or doc_fields(self.searcher.schema)

    def get(self, ids: Sequence[str]) -> list[Doc]:
        missing = [i for i in dict.fromkeys(ids) if i not in self._cache]
        for start in range(0, len(missing), 512):
            part = missing[start:start + 512]
            for doc_id, doc in zip(part, self.searcher.docs(part)):
                self._cache[doc_id] = doc_pair(doc, self.fields)
        return [self._cache[i] for i in ids]


def max_grade(*datasets: Dataset | None) -> int:
    return max((g for d in datasets if d for rel in d.qrels.values() for g in rel.values()), default=1) or 1


def judged_groups(data: Dataset, candidates: dict[str, list[str]], texts: DocTexts, negatives: int,
                  rng: np.random.Generator, top_grade: int, pool: Sequence[str] = ()) -> list[Group]:
    """One group per judged positive (grade >= 1), with `negatives` documents of lower grade drawn from
    the query's recall candidates and judged lower documents; short groups are filled from `pool`."""
    groups = []
    for qid, judged in data.qrels.items():
        cands = candidates.get(qid, [])
        for doc_id, grade in judged.items():
            if grade < 1:
                continue
            lower = list(dict.fromkeys([d for d in cands if judged.get(d, 0) < grade and d != doc_id]
                                       + [d for d, g in judged.items() if g < grade]))
            pick = [lower[i] for i in rng.permutation(len(lower))[:negatives]]
            while len(pick) < negatives and len(pool):
                extra = pool[int(rng.integers(len(pool)))]
                if extra != doc_id and extra not in judged and extra not in pick:
                    pick.append(extra)
            if not pick:
                continue
            ids = [doc_id, *pick]
            labels = [grade / top_grade] + [max(judged.get(d, 0), 0) / top_grade for d in pick]
            groups.append(Group(data.queries[qid], texts.get(ids), labels, ids))
    order = rng.permutation(len(groups))
    return [groups[i] for i in order]


def pseudo_query(doc: Doc, rng: np.random.Generator) -> tuple[str, Doc] | None:
    """A pseudo-query made from a document and the document as it is then shown (what the query was
    taken from is removed, so the model cannot just find a copy): its title (shown without it), one
    of its sentences (shown without it), or for a short title-only record a span of 2-5 of its words."""
    title, text = doc
    sentences = [s for s in _SENTENCE.split(text) if len(s.split()) >= 6] if text else []
    choices = (["title"] if title and text else []) + (["sentence"] if len(sentences) >= 3 else [])
    if choices:
        if choices[int(rng.integers(len(choices)))] == "title":
            return _clean(title), ("", text)
        s = sentences[int(rng.integers(len(sentences)))]
        return _clean(s), (title, text.replace(s, " ").strip())
    words = (title or text).split()
    if len(words) < 3:
        return None
    n = int(rng.integers(2, min(5, len(words) - 1) + 1))
    start = int(rng.integers(0, len(words) - n + 1))
    return _clean(" ".join(words[start:start + n])), doc


def _clean(text: str) -> str:
    """Query syntax characters out ("phrases", +required, -excluded), length capped."""
    return " ".join(_SYNTAX.sub(" ", text).split())[:500]


def weak_groups(searcher: Searcher, texts: DocTexts, count: int, negatives: int, rng: np.random.Generator,
                exclude: AbstractSet[str] = frozenset(), depth: int = 30) -> Iterator[Group]:
    """Up to `count` groups from documents of the corpus: a pseudo-query, its document (label 1), and
    negatives drawn from BM25's top `depth` for that pseudo-query (its source excluded)."""
    ids = searcher.ids()
    made = 0
    for i in rng.permutation(len(ids)):
        if made >= count:
            return
        doc_id = ids[i]
        if doc_id in exclude:
            continue
        made_query = pseudo_query(texts.get([doc_id])[0], rng)
        if made_query is None:
            continue
        query, shown = made_query
        hits = [h for h in searcher.bm25(query, depth, relaxed=True).ids if h != doc_id]
        if not hits:
            continue
        pick = [hits[j] for j in rng.permutation(len(hits))[:negatives]]
        while len(pick) < negatives:  # few lexical matches: random documents fill the group
            extra = ids[int(rng.integers(len(ids)))]
            if extra != doc_id and extra not in pick:
                pick.append(extra)
        made += 1
        yield Group(query, [shown, *texts.get(pick)], [1.0] + [0.0] * len(pick))
