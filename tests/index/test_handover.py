import numpy as np
import pytest

import souk.analysis.batch
from souk.catalogs import Record
from souk.index import Index
from souk.index import handover as handover_module
from souk.index import writer as writer_module
from souk.index.keys import doc_keys
from souk.index.searcher import Searcher
from souk.index.terms import TermStore
from souk.schema import Schema, beir_schema

DOCS = [  # English, Chinese, accented Latin, empty, missing and term-less parts, a repeated term
    {"_id": "1", "title": "Running shoes", "text": "Light running shoes for the road; shoes shoes."},
    {"_id": "2", "title": "跑步鞋 iphone 15 手机壳", "text": "嘉顿蛋糕 garden cake 75g"},
    {"_id": "3", "title": "Crème brûlée à la française", "text": ""},
    {"_id": "4", "title": "", "text": "Only a body, no title: Zürich ÉCOLE naïve café"},
    {"_id": "5", "text": "no title key at all"},
    {"_id": "6", "title": "!!! ...", "text": "the and of"},  # punctuation and stopwords only: no terms
]


def _records(docs):
    return [Record(i + 1, d) for i, d in enumerate(docs)]


def _same(a: TermStore, b: TermStore) -> None:
    assert a.ids == b.ids and a.vocab == b.vocab and a.commit_id == b.commit_id
    assert np.array_equal(a.keys, b.keys)
    assert list(a.units) == list(b.units)
    for name, u in a.units.items():
        v = b.units[name]
        assert u.unit == v.unit and u.avg_len == v.avg_len, name
        for x, y in ((u.offsets, v.offsets), (u.values, v.values), (u.df, v.df)):
            assert x.dtype == y.dtype and np.array_equal(x, y), name
    assert a.numbers.keys() == b.numbers.keys() and a.keywords.keys() == b.keywords.keys()
    for name in a.keywords:
        assert np.array_equal(a.keywords[name].values, b.keywords[name].values)
        assert np.array_equal(a.keywords[name].offsets, b.keywords[name].offsets)


@pytest.fixture(autouse=True)
def no_handover_left():
    """Each test starts and ends with no handed-over commit in this process."""
    handover_module._LATEST.clear()
    yield
    handover_module._LATEST.clear()


@pytest.fixture
def analyzed(monkeypatch):
    """Texts the term store's build analyzes itself (those not handed over); "read" once stored documents are read."""
    seen: list = []
    real, read = souk.analysis.batch.joined_terms, Searcher.stored_bytes

    def counting(analyzer, texts):
        seen.extend(texts)
        return real(analyzer, texts)

    def reading(self, name):
        seen.append("read")
        return read(self, name)

    monkeypatch.setattr(souk.analysis.batch, "joined_terms", counting)
    monkeypatch.setattr(Searcher, "stored_bytes", reading)
    return seen


def _built_both_ways(index: Index, analyzed: list) -> tuple[TermStore, int]:
    """The store built with what the writer handed over, checked equal to the one built from the stored documents;
    and how many texts the first build analyzed itself (-1: none, but it read the stored documents)."""
    searcher = index.searcher()
    before = len(analyzed)  # (the writer's analysis counts too)
    handed = TermStore.build(searcher)
    n = len(analyzed) - before
    n = n - 1 if "read" in analyzed[before:] else n
    _same(handed, TermStore.build(searcher, reuse=False))
    assert np.array_equal(handed.keys, doc_keys(handed.ids))
    return handed, n


def test_a_bulk_load_hands_every_document_over_and_the_store_equals_the_one_from_stored_documents(tmp_path, analyzed):
    index = Index.create(tmp_path / "index", beir_schema())
    with index.writer() as w:
        w._batch_size = 2  # (several batches; "7" written twice: the last batch wins)
        w.add(_records(DOCS + [{"_id": "7", "title": "seven"}, {"_id": "7", "title": "seven, last"}]))
        w.delete(["nope"])
        w.commit()
    assert handover_module.held() == 1
    store, own = _built_both_ways(index, analyzed)
    assert own == 0 and handover_module.held() == 0  # taken once, by the store built for that commit
    assert sorted(store.ids) == ["1", "2", "3", "4", "5", "6", "7"]
    all_ = store.units["all"]
    row = store.rows(["7"])[0]
    assert store.terms_of(all_.values[all_.offsets[row]:all_.offsets[row + 1]]) == ["seven", "last"]


def test_a_later_commit_hands_over_only_what_it_wrote(tmp_path, analyzed):
    index = Index.create(tmp_path / "index", beir_schema())
    with index.writer() as w:
        w.add(_records(DOCS))
        w.commit()
        w.add(_records([{"_id": "1", "title": "Trail shoes", "text": "跑步 shoes again"}, {"_id": "7", "title": ""}]))
        w.delete(["3", "nope"])
        w.commit()
        w.add(_records([{"_id": "3", "title": "Back again", "text": "手机壳"}, {"_id": "7", "title": "seven"}]))
        w.add(_records([{"_id": "7", "title": "seven, last"}]))
        w.commit()
    store, own = _built_both_ways(index, analyzed)
    assert own == 2 * 5  # title and text of the 5 live documents the last commit did not write (read from the store)
    assert sorted(store.ids) == ["1", "2", "3", "4", "5", "6", "7"]
    all_ = store.units["all"]
    row = store.rows(["7", "1"])
    assert store.terms_of(all_.values[all_.offsets[row[0]]:all_.offsets[row[0] + 1]]) == ["seven", "last"]
    assert "trail" in store.terms_of(all_.values[all_.offsets[row[1]]:all_.offsets[row[1] + 1]])


def test_a_writer_committing_many_times_keeps_at_most_one_commits_handover(tmp_path, analyzed):
    index = Index.create(tmp_path / "index", beir_schema())
    with index.writer() as w:
        for n in range(12):
            w.add(_records([{"_id": f"{n}-{k}", "title": f"commit {n} shoes {k}"} for k in range(5)]))
            assert w._handover.held > 0
            w.commit()
            assert w._handover.held == 0  # what the writer holds: the commit it is writing, nothing before
            assert handover_module.held() == 1
            (path, handed), = handover_module._LATEST
            assert sorted(handed.ids()) == [f"{n}-{k}" for k in range(5)]  # only the last commit's documents
        w.add(_records([{"_id": "uncommitted", "title": "dropped at close"}]))
    assert w._handover.held == 0  # (closed: dropped)
    other = Index.create(tmp_path / "other", beir_schema())
    with other.writer() as w:
        w.add(_records(DOCS[:2]))
        w.commit()
    (path, _), = handover_module._LATEST  # one handed-over commit per process: the other index's replaced it
    assert path.endswith("other")
    store, own = _built_both_ways(index, analyzed)  # (none left for `index`: built from its stored documents)
    assert own == 2 * 12 * 5 and len(store.ids) == 60  # (title and text each)


def test_a_commit_past_the_cap_hands_nothing_over_and_gives_the_same_store(tmp_path, analyzed, monkeypatch):
    monkeypatch.setattr(handover_module, "MAX_HANDOVER_BYTES", 4_000)
    index = Index.create(tmp_path / "index", beir_schema())
    big = [{"_id": f"big-{k}", "title": f"big batch {k}", "text": "running shoes " * 40} for k in range(40)]
    with index.writer() as w:
        w._batch_size = 8
        w.add(_records(big))
        assert w._handover.over and w._handover.held == 0  # past the cap: nothing more kept for this commit
        w.commit()
        assert handover_module.held() == 0
        store, own = _built_both_ways(index, analyzed)
        assert own == 2 * len(big)  # the fallback: every document analyzed from the stored documents
        w.add(_records(DOCS))  # the next commit is under the cap again: handed over
        w.commit()
        assert handover_module.held() == 1
    store, own = _built_both_ways(index, analyzed)
    assert own == 2 * len(big) and len(store.ids) == len(big) + len(DOCS)


def test_a_batch_that_failed_half_written_hands_nothing_over(tmp_path, analyzed, monkeypatch):
    index = Index.create(tmp_path / "index", beir_schema())
    real, calls = writer_module._C_ENCODE, []

    def failing(values, level):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk on fire")
        return real(values, level)

    with index.writer() as w:
        w.add(_records(DOCS))
        monkeypatch.setattr(writer_module, "_C_ENCODE", failing)
        with pytest.raises(RuntimeError):
            w.add(_records([{"_id": "1", "title": "new one"}, {"_id": "2", "title": "new two"},
                            {"_id": "3", "title": "new three"}]))
        monkeypatch.setattr(writer_module, "_C_ENCODE", real)
        w.commit()  # (a caller that goes on: "1" and "2" are written with their new text, "3" deleted, not added)
    assert handover_module.held() == 0
    store, own = _built_both_ways(index, analyzed)
    assert own == 2 * (len(DOCS) - 1) and "3" not in store.ids and "new" in store.vocab  # from the stored documents


def test_a_rollback_drops_the_terms_written_since_the_last_commit(tmp_path, analyzed):
    index = Index.create(tmp_path / "index", beir_schema())
    with index.writer() as w:
        w.add(_records(DOCS[:3]))
        w.add(_records([{"_id": "1", "title": "rolled back"}, {"_id": "8", "title": "never written"}]))
        w.rollback()
        w.add(_records(DOCS))
        w.commit()
    store, own = _built_both_ways(index, analyzed)
    assert own == 0 and "rolled" not in store.vocab and "8" not in store.ids


def test_documents_another_writer_wrote_are_analyzed_and_an_old_handover_is_not_taken(tmp_path, analyzed):
    index = Index.create(tmp_path / "index", beir_schema())
    with index.writer() as w:
        w.add(_records(DOCS))
        w.commit()
    with index.writer() as w:  # an index opened later: its earlier documents were handed over by no one here
        w.add(_records([{"_id": "9", "title": "new one", "text": "新的"}, {"_id": "2", "title": "updated"}]))
        w.commit()
    store, own = _built_both_ways(index, analyzed)
    assert own == 2 * (len(DOCS) - 1)  # title and text of each document the second writer did not write
    # (the stored documents were read: "read" counted once)
    with index.writer() as w:
        w.add(_records([{"_id": "10", "title": "ten"}]))
        w.commit()
    old = index.searcher()
    with index.writer() as w:
        w.delete(["10"])
        w.commit()
    before = len(analyzed)
    TermStore.build(old)  # a commit the last handover is not of: analyzed from its stored documents
    assert len(analyzed) - before == 2 * len(store.ids) + 2 + 1  # and "read"


def test_other_analyzers_keyword_and_number_fields_round_trip(tmp_path, analyzed):
    schema = Schema.from_dict({"id": "sku", "fields": {
        "sku": {"kind": "keyword"}, "name": {"kind": "text"},
        "bigrams": {"kind": "text", "analyzer": "cjk_bigram", "from": "name"},
        "tag": {"kind": "text", "analyzer": "keyword"}, "simple": {"kind": "text", "analyzer": "simple"},
        "brand": {"kind": "keyword"}, "price": {"kind": "number", "feature": True}}})
    index = Index.create(tmp_path / "index", schema)
    with index.writer() as w:
        w.add(_records([{"sku": "a", "name": "华为手机 Mate 60", "tag": "Big Deal", "simple": "The shoes",
                         "brand": "华为", "price": 5999},
                        {"sku": "b", "name": "", "tag": "", "brand": "x", "price": 1},
                        {"sku": "c", "brand": "y"}]))
        w.add(_records([{"sku": "b", "name": "苹果 iPhone 15 手机壳", "simple": "跑步鞋", "price": 2}]))
        w.commit()
    store, own = _built_both_ways(index, analyzed)
    assert own == 0 and "苹果" in store.vocab and {"name", "bigrams", "tag", "simple"} <= set(store.units)


@pytest.mark.parametrize("text", ["running shoes for the road", "跑步鞋 手机壳 嘉顿蛋糕", "Crème brûlée 🍮 café"])
def test_the_size_estimate_counts_what_a_batch_keeps_alive(text):
    import sys

    ids = [f"id-{k}" for k in range(50)]
    columns = [[f"{text} {k}" if k % 7 else None for k in range(50)], [""] * 50]
    keywords = [["brand"] * 50, [None] * 50]
    strings = ids + [t for c in columns for t in c if t is not None] + keywords[0]
    real = sum(map(sys.getsizeof, strings)) + 8 * (len(strings) + 2 * 50)
    assert real <= handover_module._estimate(ids, columns, keywords) <= 3 * real
