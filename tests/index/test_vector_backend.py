"""A newcomer adds a vector backend by writing one class and registering it: an in-process numpy
brute-force backend, used end to end through dense search."""
from pathlib import Path

import numpy as np
import pytest

from souk.errors import ConfigError
from souk.index.vectors import VECTOR_BACKENDS, FaissBackend, VectorBackend, open_vector_set
from souk.ranking.pipeline import build_pipeline
from model_fakes import vector_index


class NumpyBackend:
    """Every vector in one array; search is a matrix product and a sort."""

    def __init__(self, dim: int, params: dict):
        self.keys = np.zeros(0, np.int64)
        self.vectors = np.zeros((0, dim), np.float32)

    def add(self, keys, vectors):
        self.keys = np.concatenate([self.keys, keys])
        self.vectors = np.vstack([self.vectors, vectors])

    def remove(self, keys):
        keep = ~np.isin(self.keys, keys)
        self.keys, self.vectors = self.keys[keep], self.vectors[keep]

    def search(self, queries, k, filters):
        mask = np.ones(len(self.keys), bool) if filters is None else np.isin(self.keys, filters.keys())
        keys, sims = self.keys[mask], queries @ self.vectors[mask].T
        top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        out_keys = np.full((len(queries), k), -1, np.int64)
        out_scores = np.zeros((len(queries), k), np.float32)
        out_keys[:, :top.shape[1]] = keys[top]
        out_scores[:, :top.shape[1]] = np.take_along_axis(sims, top, axis=1)
        return out_keys, out_scores

    def save(self, folder: Path):
        np.savez(folder / "numpy.npz", keys=self.keys, vectors=self.vectors)

    @classmethod
    def open(cls, folder: Path, params: dict):
        data = np.load(folder / "numpy.npz")
        backend = cls(data["vectors"].shape[1], params)
        backend.keys, backend.vectors = data["keys"], data["vectors"]
        return backend


@pytest.fixture(autouse=True)
def numpy_backend():
    """Registered for each test here only (`override`), gone after it."""
    with VECTOR_BACKENDS.override("numpy-exact", NumpyBackend):
        yield


def test_exported_names_are_what_was_meant():
    import souk.index.vectors as vectors

    assert set(vectors.__all__) == {
        "DEFAULTS", "ENCODERS", "INDEX_TYPES", "KEEP_CACHES", "VECTOR_BACKENDS", "FaissBackend", "VectorBackend",
        "VectorCacheWarning", "VectorSet", "encode_documents", "encode_queries", "encoder_config", "field_params",
        "model_record", "open_vector_set", "validate_params"}
    assert all(getattr(vectors, name) is not None for name in vectors.__all__)


def test_both_backends_meet_the_protocol():
    assert isinstance(NumpyBackend(4, {}), VectorBackend)
    assert isinstance(FaissBackend(4, {"index": "flat"}), VectorBackend)
    assert VECTOR_BACKENDS.get("numpy-exact") is NumpyBackend
    with pytest.raises(ConfigError, match="numpy-exact"):
        VECTOR_BACKENDS.get("annoy")


@pytest.fixture
def indexes(tmp_path, tiny_encoder):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    return vector_index(tmp_path / "a", tiny_encoder, 30, index="numpy-exact"), vector_index(
        tmp_path / "b", tiny_encoder, 30
    )


def test_dense_search_on_the_numpy_backend_matches_faiss_flat(indexes):
    numpy_index, flat_index = indexes
    queries = ["solar panels", "green tea ceremony", "iPhone 15 手机壳"]
    for q in queries:
        ours, ref = (build_pipeline("dense", i.searcher()).search(q, 10) for i in indexes)
        assert ours.ids == ref.ids and np.allclose(ours.scores, ref.scores, atol=1e-5)
    folder = numpy_index.path / "vectors" / "embedding" / numpy_index.searcher().commit_id
    assert (folder / "numpy.npz").exists() and not (folder / "index.faiss").exists()


def test_the_numpy_backend_is_cached_and_updated_like_any_other(indexes):
    numpy_index, _ = indexes
    field = numpy_index.schema.fields["embedding"]
    with numpy_index.writer() as w:
        w.delete(["doc1", "doc2"])
        w.commit()
    vs = open_vector_set(numpy_index.searcher(), field)
    assert vs.meta["built"] == "full" and len(vs) == 28  # no older cache yet: built from the stored vectors
    with numpy_index.writer() as w:
        w.delete(["doc3"])
        w.commit()
    searcher = numpy_index.searcher()
    vs = open_vector_set(searcher, field)
    assert vs.meta["built"] == "incremental" and len(vs) == 27
    hits = build_pipeline("dense", searcher).search("solar panels", 30, [])
    assert len(hits) == 27 and not {"doc1", "doc2", "doc3"} & set(hits.ids)
    assert open_vector_set(numpy_index.searcher(), field).meta["built"] == "incremental"  # loaded, not rebuilt


def test_a_single_query_search_runs_on_one_thread_and_leaves_the_setting_as_it_was():
    import threading

    import faiss

    from souk.index.vectors.backend import SPLIT_FROM

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((500, 16)).astype(np.float32)
    backend = FaissBackend(16, {"index": "flat", "ef_search": 64, "nprobe": 16})
    backend.add(np.arange(500, dtype=np.int64) * 7, vectors)
    queries = rng.standard_normal((SPLIT_FROM, 16)).astype(np.float32)
    seen: list[int] = []
    real = faiss.omp_set_num_threads
    before = faiss.omp_get_max_threads()

    def other_thread() -> int:
        out: list[int] = []
        worker = threading.Thread(target=lambda: out.append(faiss.omp_get_max_threads()))
        worker.start()
        worker.join()
        return out[0]

    elsewhere = other_thread()
    faiss.omp_set_num_threads = lambda n: seen.append(n) or real(n)
    try:
        many_keys, many_scores = backend.search(queries, 10, None)  # a batch: the threads as set
        assert seen == []
        one = [backend.search(q[None], 10, None) for q in queries]
    finally:
        faiss.omp_set_num_threads = real
    assert seen == [1, before] * SPLIT_FROM and faiss.omp_get_max_threads() == before
    for i, (keys, scores) in enumerate(one):
        assert (keys[0] == many_keys[i]).all() and np.allclose(scores[0], many_scores[i], atol=1e-5)
    assert other_thread() == elsewhere  # other threads' setting untouched
