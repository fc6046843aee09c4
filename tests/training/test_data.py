"""Training groups: pseudo-queries from documents, judged groups with lower-graded negatives."""
from __future__ import annotations

import numpy as np

from souk.evaluation.datasets import Dataset
from souk.training.data import DocTexts, judged_groups, pseudo_query, weak_groups

ABSTRACT = ("Aspirin lowers the risk of stroke in older adults. We followed ten thousand patients for five years. "
            "Bleeding events were more common among patients taking aspirin daily. Benefits outweighed harms "
            "in those at high risk.")


def test_a_pseudo_query_is_removed_from_the_document_it_comes_from():
    seen = set()
    for seed in range(20):
        query, (title, text) = pseudo_query(("Aspirin and stroke", ABSTRACT), np.random.default_rng(seed))
        if query == "Aspirin and stroke":
            assert title == "" and text == ABSTRACT
            seen.add("title")
        else:
            assert query in ABSTRACT and query not in text and title == "Aspirin and stroke"
            seen.add("sentence")
    assert seen == {"title", "sentence"}


def test_a_short_title_gives_a_span_of_its_words_and_syntax_is_dropped():
    query, doc = pseudo_query(('Delta "Vero" 1-Handle -Shower Faucet Trim Kit', ""), np.random.default_rng(3))
    assert 2 <= len(query.split()) <= 5 and '"' not in query and not any(w.startswith("-") for w in query.split())
    assert doc == ('Delta "Vero" 1-Handle -Shower Faucet Trim Kit', "")
    assert pseudo_query(("Hammer", ""), np.random.default_rng(0)) is None


class FakeTexts(DocTexts):
    def __init__(self):
        self.fields, self._cache = {"title": "title", "text": ["text"]}, {}

    def get(self, ids):
        return [(i, "") for i in ids]


def test_judged_negatives_have_lower_grades_and_fill_from_the_pool():
    data = Dataset({"q": "drill"}, {"q": {"a": 3, "b": 1, "c": 0}})
    groups = judged_groups(data, {"q": ["a", "x", "b", "c"]}, FakeTexts(), 3, np.random.default_rng(0), 3,
                           pool=["p1", "p2"])
    by_pos = {g.docs[0][0]: g for g in groups}
    assert set(by_pos) == {"a", "b"}
    a = by_pos["a"]
    assert {d for d, _ in a.docs[1:]} <= {"x", "b", "c"} and a.labels[0] == 1.0
    assert dict(zip((d for d, _ in a.docs), a.labels)).get("b", 1 / 3) == 1 / 3
    b = by_pos["b"]
    assert "a" not in {d for d, _ in b.docs} and len(b.docs) == 4  # x, c and one from the pool


def test_weak_groups_mine_bm25_negatives(tiny_cross):
    from souk.index import Index

    searcher = Index.open(tiny_cross["index"]).searcher()
    groups = list(weak_groups(searcher, DocTexts(searcher), 5, 3, np.random.default_rng(0)))
    assert len(groups) == 5 and all(len(g.docs) == 4 and g.labels == [1.0, 0.0, 0.0, 0.0] for g in groups)
