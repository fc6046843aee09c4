import numpy as np
import pytest

from souk.index import Index
from souk.index.filters import parse_filters
from souk.index.impacts import FIELD_NORMS

QUERIES = ["milk", "running shoes", "跑步鞋", "嘉顿蛋糕", "milk milk tea", "garden cake 75g", "nothing-like-this",
           "iphone 15 手机壳"]


@pytest.fixture(scope="module")
def pair(product_index):
    """A searcher answering from tantivy and one answering from the impacts, on one commit."""
    plain = Index.open(product_index).searcher()
    fast = Index.open(product_index).searcher()
    assert fast.prepare_bm25()
    return plain, fast


def test_field_norms_are_tantivys_table():
    assert FIELD_NORMS[:41].tolist() == list(range(41))
    assert FIELD_NORMS[41:50].tolist() == [42, 44, 46, 48, 50, 52, 54, 56, 60]
    assert FIELD_NORMS[-1] == 2_013_265_944 and len(FIELD_NORMS) == 256 and np.all(np.diff(FIELD_NORMS) > 0)


def test_impacts_rank_and_score_as_tantivy(pair):
    plain, fast = pair
    for q in QUERIES:
        want, got = plain.bm25(q, 20), fast.bm25(q, 20)
        assert got.ids == want.ids, q
        assert np.allclose(got.scores, want.scores, rtol=1e-5), q


def test_requests_the_impacts_cannot_answer_go_to_tantivy(pair):
    plain, fast = pair
    flt = parse_filters(["brand=Garden"], plain.schema)
    cases = [("cake", {"filters": flt}), ('"running shoes"', {}), ("-milk tea", {}), ("milk tea", {"match": "all"}),
             ("milk", {"expansions": [("tea", 0.5)]})]
    for q, kw in cases:
        assert fast.bm25(q, 10, **kw).ids == plain.bm25(q, 10, **kw).ids, q


def test_a_phrase_matching_nothing_is_relaxed_from_the_impacts(pair, monkeypatch):
    plain, fast = pair
    asked: list[str] = []
    real = fast._bm25_impacts
    monkeypatch.setattr(fast, "_bm25_impacts", lambda text, k: asked.append(text) or real(text, k))
    for q in ['milk "tea running cake"', '"garden shoes zzzz" +milk']:
        want, got = plain.bm25(q, 20), fast.bm25(q, 20)
        assert want.ids and got.ids == want.ids, q
        assert np.allclose(got.scores, want.scores, rtol=1e-5), q
    assert [a.split() for a in asked] == [["milk", "tea", "running", "cake"], ["garden", "shoes", "zzzz", "milk"]]
    assert fast.bm25('"tea running cake" -milk', 20).ids == plain.bm25('"tea running cake" -milk', 20).ids
    assert len(asked) == 2  # an excluded word: tantivy answers the relaxed query


def test_empty_and_zero_k(pair):
    _, fast = pair
    assert fast.bm25("zzzzqqq", 5).ids == [] and fast.bm25("milk", 0).ids == []


def test_a_snapshot_whose_term_store_is_open_builds_its_impacts_by_itself(product_index):
    import time

    from souk.index.terms import TermStore

    searcher = Index.open(product_index).searcher()
    want = searcher.bm25("milk tea", 10)
    assert searcher._impacts is None  # no term store: tantivy, nothing built
    TermStore.open(searcher)  # as ranking features do
    assert searcher.bm25("milk tea", 10).ids == want.ids  # tantivy while the impacts are built in a thread
    for _ in range(200):
        if searcher._impacts:
            break
        time.sleep(0.05)
    assert searcher._impacts and searcher.bm25("milk tea", 10).ids == want.ids


def test_an_index_past_the_token_limit_keeps_tantivy(product_index, monkeypatch):
    import souk.index.impacts as impacts

    monkeypatch.setattr(impacts, "MAX_IMPACT_TOKENS", 1)
    searcher = Index.open(product_index).searcher()
    assert searcher.prepare_bm25() is False
    assert searcher.bm25("milk", 5).ids == Index.open(product_index).searcher().bm25("milk", 5).ids


def test_a_term_store_with_rows_past_its_documents_builds_no_impacts(product_index):
    """The term store can be read from disk (untrusted): one whose offsets hold more rows than it lists documents
    would have the compiled sum write past its array; it builds nothing, and tantivy answers."""
    from dataclasses import replace

    from souk.index.impacts import Impacts
    from souk.index.terms import TermStore

    searcher = Index.open(product_index).searcher()
    store = TermStore.open(searcher)
    plan = searcher._plan(tuple(searcher.schema.search_fields))
    assert Impacts.of(store, searcher.schema, plan) is not None
    name, unit = next(iter(store.units.items()))
    store.units[name] = replace(unit, offsets=np.concatenate([unit.offsets, unit.offsets[-1:]]))  # one row more
    try:
        assert Impacts.of(store, searcher.schema, plan) is None
    finally:
        store.units[name] = unit


def _plain_and_fast(tmp_path, lines: list[dict]):
    """An index of `lines` (a catalog inferred from them): a searcher answering from tantivy and one from impacts."""
    import json

    from souk.catalogs import read_catalog
    from souk.schema import infer_schema

    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines), encoding="utf-8")
    records = list(read_catalog(path))
    index = Index.create(tmp_path / "index", infer_schema([r.data for r in records]))
    with index.writer() as writer:
        writer.add(records)
        writer.commit()
    plain, fast = index.searcher(), Index.open(tmp_path / "index").searcher()
    assert fast.prepare_bm25()
    return plain, fast


def test_the_floor_of_common_terms_keeps_the_top_k_exact(tmp_path):
    """Terms in >= FLOOR_K documents give a floor under the k-th best score (the dense path prunes with it):
    rankings stay tantivy's for k up to FLOOR_K and past it."""
    import random

    from souk.index.impacts import FLOOR_K

    rng = random.Random(7)
    words = ["milk", "tea", "cake", "green", "fresh", "box", "large", "small", "sweet", "dark"]
    lines = [{"id": f"d{i}", "title": " ".join(rng.choices(words, k=rng.randint(2, 9)))} for i in range(3 * FLOOR_K)]
    plain, fast = _plain_and_fast(tmp_path, lines)
    assert max(f for field in fast._impacts.fields.values() for f in field.floors) > 0
    for q in ["milk tea", "green cake box", "sweet dark milk large", "small"]:
        for k in (10, FLOOR_K, 2 * FLOOR_K):
            want, got = plain.bm25(q, k), fast.bm25(q, k)
            assert np.allclose(got.scores, want.scores, rtol=1e-5), (q, k)
            assert set(got.ids[:k // 2]) == set(want.ids[:k // 2]) or len(set(want.scores.tolist())) < k, (q, k)


@pytest.mark.parametrize("dense,compiled", [(0, True), (10**9, True), (10**9, False)])
def test_every_sum_keeps_tantivys_ranking_through_ties_at_the_kth_score(tmp_path, monkeypatch, dense, compiled):
    """The sparse sum (a reused buffer, one entry per document) and the dense one (scipy's compiled scatter, or
    `bincount` where it is missing) give tantivy's ids in its order, ties at the k-th score and repeated query
    words included (many documents share a title: their scores tie)."""
    import souk.index.impacts as impacts

    titles = ["milk tea", "green tea", "milk", "dark milk tea box", "tea"]
    monkeypatch.setattr(impacts, "DENSE", dense)
    if not compiled:
        monkeypatch.setattr(impacts, "_compiled_scatter", lambda: None)
    plain, fast = _plain_and_fast(tmp_path, [{"id": f"d{i}", "title": f"{titles[i % len(titles)]} item{i}"}
                                             for i in range(40)])
    assert (fast._impacts._scatter is not None) == compiled
    queries = ["milk tea", "tea tea green", "dark box milk", "tea", "box milk box tea milk green item7",
               "milk tea " * 70]
    for q in queries:
        for k in (3, 10, 17, 100):
            want, got = plain.bm25(q, k), fast.bm25(q, k)
            assert want.ids and got.ids == want.ids, (q, k)
            assert np.allclose(got.scores, want.scores, rtol=1e-5), (q, k)
            assert len(set(got.scores.tolist())) < len(got.ids), (q, k)  # ties
    assert fast._impacts._buffers or dense  # the sparse sums gave their buffer back



def test_the_postings_kept_at_hand_stay_bounded_and_answers_stay_tantivys(pair, monkeypatch):
    """`FieldImpacts.views` remembers the terms queries asked for, at most MAX_IMPACT_VIEWS per field (then forgets
    them all): a long tail of words cannot grow it without end, and queries answer the same throughout."""
    import souk.index.impacts as impacts

    plain, fast = pair
    monkeypatch.setattr(impacts, "MAX_IMPACT_VIEWS", 3)
    for f in fast._impacts.fields.values():
        f.views.clear()  # (earlier tests asked for terms under the real bound)
    for _ in range(2):
        for q in QUERIES + ["tea", "green tea cake", "sweet milk box", "dark chocolate"]:
            want, got = plain.bm25(q, 10), fast.bm25(q, 10)
            assert got.ids == want.ids, q
            assert all(len(f.views) <= 3 for f in fast._impacts.fields.values()), q
    assert any(f.views for f in fast._impacts.fields.values())
