import numpy as np
import pytest

from souk.analysis.registry import get_analyzer
from souk.catalogs import Record
from souk.index import Index
from souk.index.terms import TermStore, _doc_freq
from souk.schema import beir_schema

DOCS = [  # English, Chinese, accented Latin, mixed, empty and missing parts, a repeated term, an over-long text
    {"_id": "1", "title": "Running shoes", "text": "Light running shoes for the road; shoes shoes."},
    {"_id": "2", "title": "跑步鞋 iphone 15 手机壳", "text": "嘉顿蛋糕 garden cake 75g"},
    {"_id": "3", "title": "Crème brûlée à la française", "text": ""},
    {"_id": "4", "title": "", "text": "Only a body, no title: Zürich ÉCOLE naïve café"},
    {"_id": "5", "text": "no title key at all"},
    {"_id": "6", "title": "long", "text": "word " * 30_000},
]


@pytest.mark.filterwarnings("ignore:input of")
def test_the_store_holds_each_documents_terms_as_the_analyzer_gives_them(tmp_path):
    index = Index.create(tmp_path / "index", beir_schema())
    with index.writer() as w:
        w.add([Record(i + 1, d) for i, d in enumerate(DOCS)])
        w.commit()
    store = TermStore.build(index.searcher())
    an = get_analyzer(index.schema.analyzer_of(index.schema.fields["all"]))
    assert an.parts  # (a new index: `75g` is also 75 g)
    rows = store.rows([d["_id"] for d in DOCS])
    for name, parts in (("all", ("title", "text")), ("title", ("title",)), ("text", ("text",))):
        unit = store.units[name]
        for d, r in zip(DOCS, rows):
            got = store.terms_of(unit.values[unit.offsets[r]:unit.offsets[r + 1]])
            assert got == [t for p in parts for t in an.terms(d.get(p) or "")], (name, d["_id"])
        want_df = {}
        for d in DOCS:
            for t in {t for p in parts for t in an.terms(d.get(p) or "")}:
                want_df[t] = want_df.get(t, 0) + 1
        assert {store.vocab[i]: int(n) for i, n in enumerate(unit.df) if n} == want_df, name
    assert len(set(store.vocab)) == len(store.vocab)


def test_doc_freq_counts_a_document_once_per_term():
    tokens = np.asarray([0, 0, 2, 1, 0, 2, 2], dtype=np.int32)
    assert _doc_freq(tokens, np.asarray([3, 0, 4]), 4).tolist() == [2, 1, 2, 0]
    assert _doc_freq(np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int64), 2).tolist() == [0, 0]
