"""A large `flat` set scans an 8-bit copy for candidates and scores them exactly: the flat scan's results,
kept in step through add/remove/save/open, and a copy that is not this set's is refused (real FAISS)."""
import numpy as np
import pytest

import souk.index.vectors.backend as backend
from souk.errors import IndexStateError
from souk.index.filters import Filters
from souk.index.vectors import VectorSet

DIM = 32


@pytest.fixture(autouse=True)
def small_threshold(monkeypatch):
    monkeypatch.setattr(backend, "COARSE_FROM", 500)


def corpus(n, seed=0):
    """Clustered unit vectors (near ties inside clusters, as real embeddings have) and keys with gaps."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((20, DIM))
    x = (centers[rng.integers(0, 20, n)] + 0.4 * rng.standard_normal((n, DIM))).astype(np.float32)
    return np.arange(n, dtype=np.int64) * 3 + 11, x / np.linalg.norm(x, axis=1, keepdims=True)


def params(index="flat"):
    return {"index": index, "dim": DIM, "transform": "none", "normalize": True, "ef_search": 64, "nprobe": 16}


def flat_scan(keys, x, q, k, allowed=None):
    mask = np.ones(len(keys), bool) if allowed is None else np.isin(keys, allowed)
    sims = q @ x[mask].T
    top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return keys[mask][top], np.take_along_axis(sims, top, axis=1)


def queries(x, n=30, seed=1):
    rng = np.random.default_rng(seed)
    q = x[rng.integers(0, len(x), n)] + 0.3 * rng.standard_normal((n, DIM)).astype(np.float32)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def same_results(found, scores, truth, truth_scores):
    """Equal to the flat scan; where two documents tie to float rounding their order may differ."""
    assert np.allclose(scores, truth_scores, atol=1e-5)
    for row, want, s in zip(found, truth, truth_scores):
        clear = np.r_[np.diff(s) < -1e-5, True] & np.r_[True, np.diff(s) < -1e-5]
        assert np.array_equal(row[clear], want[clear])


def test_a_large_flat_set_gives_the_flat_scans_results_through_its_8bit_copy(monkeypatch):
    keys, x = corpus(2000)
    vs = VectorSet.build(keys, x, params())
    assert vs.backend.coarse is not None
    read = []
    depth = backend.CoarseScan.candidates
    monkeypatch.setattr(backend.CoarseScan, "candidates", lambda self, *a: read.append(1) or depth(self, *a))
    q = queries(x)
    for k in (1, 10, 100):
        same_results(*vs.search(q, k), *flat_scan(keys, x, q, k))
    assert read  # the copy was scanned, not the flat index
    monkeypatch.setattr(backend, "EXACT_BELOW", 0)  # a filter through FAISS's selector, on the copy too
    allowed = keys[::7]
    found, scores = vs.search(q, 10, Filters.of_keys(allowed))
    same_results(found, scores, *flat_scan(keys, x, q, 10, allowed))


def test_a_small_or_other_kind_of_set_keeps_no_copy():
    keys, x = corpus(400)
    assert VectorSet.build(keys, x, params()).backend.coarse is None
    keys, x = corpus(600)
    assert VectorSet.build(keys, x, params("sq8")).backend.coarse is None


def test_the_copy_follows_adds_and_removes():
    keys, x = corpus(1000)
    vs = VectorSet.build(keys[:600], x[:600], params())
    vs.add(keys[600:], x[600:])
    vs.remove(keys[:50])
    assert vs.backend.coarse.index.ntotal == vs.backend.index.ntotal == 950
    q = queries(x)
    same_results(*vs.search(q, 20), *flat_scan(keys[50:], x[50:], q, 20))


def test_saved_and_opened_with_its_copy_and_an_old_cache_without_one_gets_it_built(tmp_path):
    keys, x = corpus(800)
    vs = VectorSet.build(keys, x, params())
    vs.save(tmp_path / "new")
    assert (tmp_path / "new" / backend.COARSE_FILE).is_file()
    q = queries(x)
    back = VectorSet.load(tmp_path / "new")
    assert back.backend.coarse is not None and np.array_equal(back.search(q, 10)[0], vs.search(q, 10)[0])
    vs.backend.coarse = None  # as a cache written before the copy existed
    vs.save(tmp_path / "old")
    assert not (tmp_path / "old" / backend.COARSE_FILE).exists()
    old = VectorSet.load(tmp_path / "old")
    assert old.backend.coarse is not None and np.array_equal(old.search(q, 10)[0], back.search(q, 10)[0])


@pytest.mark.parametrize("foreign", ["other keys", "not 8-bit", "fewer vectors"])
def test_a_copy_that_is_not_this_sets_is_refused(foreign, tmp_path):
    import faiss

    keys, x = corpus(800)
    vs = VectorSet.build(keys, x, params())
    vs.save(tmp_path)
    if foreign == "other keys":
        other = backend.CoarseScan.build(DIM, keys + 1, x).index
    elif foreign == "not 8-bit":
        other = faiss.IndexIDMap2(faiss.IndexFlatIP(DIM))
        other.add_with_ids(x, keys)
    else:
        other = backend.CoarseScan.build(DIM, keys[:10], x[:10]).index
    faiss.write_index(other, str(tmp_path / backend.COARSE_FILE))
    with pytest.raises(IndexStateError, match="8-bit copy"):
        backend.FaissBackend.open(tmp_path, params())


def test_a_lone_querys_scan_in_parts_finds_the_same_candidates_and_follows_removes(monkeypatch):
    monkeypatch.setattr(backend, "SHARD_MIN", 300)
    monkeypatch.setattr(backend, "scan_parts", lambda: 3)
    keys, x = corpus(2000)
    vs = VectorSet.build(keys, x, params())
    coarse, q = vs.backend.coarse, queries(x, 10)
    for k in (5, 100):
        for row in q:
            whole = coarse.candidates(row[None], k, None)
            assert np.array_equal(coarse.candidates(row[None], k, None, split=True), whole)
    assert len(coarse._parts) == 3
    same_results(*vs.search(q[:1], 10), *flat_scan(keys, x, q[:1], 10))  # one query: scanned in parts
    vs.remove(keys[:1000])
    assert coarse._parts is None
    found, _ = vs.search(q[:1], 50)
    assert not np.isin(found, keys[:1000]).any() and sum(p.ntotal for p in coarse._parts) == 1000


def test_a_forked_child_scans_in_parts_on_its_own_threads(monkeypatch):
    import multiprocessing as mp

    monkeypatch.setattr(backend, "SHARD_MIN", 300)
    monkeypatch.setattr(backend, "scan_parts", lambda: 2)
    keys, x = corpus(1000)
    vs = VectorSet.build(keys, x, params())
    q = queries(x, 1)
    want = vs.search(q, 10)[0]  # the parent's pool exists now
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=lambda: out.put(vs.search(q, 10)[0]))  # forked: nothing is pickled but the answer
    child.start()
    got = out.get(timeout=60)
    child.join(10)
    assert np.array_equal(got, want)
