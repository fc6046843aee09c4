"""VectorSet over FAISS backends, on vectors of the tiny random-weight encoder (no MiniLM needed)."""
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

import souk.index.vectors.backend as backend
from souk.index.filters import Filters
from souk.errors import ConfigError, IndexStateError
from souk.index.keys import doc_keys
from souk.index.vectors import INDEX_TYPES, KEEP_CACHES, VectorSet, validate_params
from souk.models import encode_resumable, load_encoder
from model_fakes import synthetic_texts, vector_index

N = 200
# ivfpq: 200 docs train a coarse 2-bit PQ (chance 0.05; seen 0.09-0.11)
# flat is exact; FAISS (BLAS) and numpy may order a near-tie at rank 10 differently (seen once in 400)
MIN_RECALL = {"flat": 0.99, "hnsw": 0.95, "sq8": 0.9, "ivfpq": 0.075}


def check(**params):
    return validate_params(SimpleNamespace(name="embedding", params=params))


@pytest.fixture(scope="module")
def params(tiny_encoder):
    return lambda **kw: check(model=str(tiny_encoder), backend="torch-fp32", **kw)


# ---- params: pure, no model is run --------------------------------------------------------------
def test_params_are_completed_and_idempotent(tiny_encoder):
    p = check()
    assert p["dim"] == 384 and p["model"] == "all-MiniLM-L6-v2" and p["index"] == "flat" and p["transform"] == "none"
    assert check(**p) == p
    tiny = check(model=str(tiny_encoder))
    assert tiny["dim"] == 32 and tiny["model"] == str(tiny_encoder.resolve())


def test_a_model_directory_is_pinned_as_an_absolute_path(tiny_encoder, monkeypatch):
    monkeypatch.chdir(tiny_encoder.parent)
    assert check(model=tiny_encoder.name)["model"] == str(tiny_encoder.resolve())


@pytest.mark.parametrize("bad, key", [
    ({"index": "annoy"}, "index"), ({"transform": "pca:999"}, "transform"), ({"max_length": "long"}, "max_length"),
    ({"dim": 768}, "dim"), ({"normalise": True}, "normalise"), ({"model": "bert-huge"}, "model"),
    ({"backend": "tpu"}, "backend"), ({"source": "title"}, "source"),
])
def test_bad_params_name_the_key(bad, key):
    with pytest.raises(ConfigError, match=key):
        check(**bad)


def test_a_cross_encoder_is_not_a_vector_model(tiny_cross_encoder):
    with pytest.raises(ConfigError, match="model.*bi-encoder"):
        check(model=str(tiny_cross_encoder))


# ---- on the tiny encoder's vectors --------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus(tiny_encoder, tmp_path_factory):
    texts = synthetic_texts(N)
    enc = load_encoder(tiny_encoder, backend="torch-fp32")
    ids = [f"doc{i}" for i in range(N)]
    return SimpleNamespace(texts=texts, ids=ids, keys=doc_keys(ids), q=enc.encode(synthetic_texts(40, seed=1)),
                           x=encode_resumable(enc, texts, tmp_path_factory.mktemp("ckpt"), progress=False))


def brute(x, keys, q, k, allowed=None):
    mask = np.ones(len(keys), bool) if allowed is None else np.isin(keys, allowed)
    sims = q @ x[mask].T
    return keys[mask][np.argsort(-sims, axis=1, kind="stable")[:, :k]]


@pytest.mark.parametrize("kind", list(INDEX_TYPES))
def test_recall_against_exact_search(kind, corpus, params):
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # k-means training depends on the thread count other tests leave behind
    try:
        vs = VectorSet.build(corpus.keys, corpus.x, params(index=kind))
    finally:
        faiss.omp_set_num_threads(threads)
    found, scores = vs.search(corpus.q, 10)
    truth = brute(corpus.x, corpus.keys, corpus.q, 10)
    recall = np.mean([len(np.intersect1d(a, b)) / 10 for a, b in zip(found, truth)])
    assert recall >= MIN_RECALL[kind]
    assert np.all(np.diff(scores, axis=1) <= 1e-5)


@pytest.mark.parametrize("kind", list(INDEX_TYPES))
@pytest.mark.parametrize("exact_below", [backend.EXACT_BELOW, 0])  # exact scoring of small sets, and FAISS selectors
def test_filters_restrict_results(kind, exact_below, corpus, params, monkeypatch):
    monkeypatch.setattr(backend, "EXACT_BELOW", exact_below)
    vs = VectorSet.build(corpus.keys, corpus.x, params(index=kind))
    allowed = np.concatenate([corpus.keys[::9], [12345]])  # an unknown key is ignored
    found, _ = vs.search(corpus.q, 5, Filters.of_keys(allowed))
    assert np.isin(found[found >= 0], allowed).all()
    if kind == "flat":
        assert np.array_equal(found, brute(corpus.x, corpus.keys, corpus.q, 5, allowed))
    keys, _ = vs.search(corpus.q[:1], 5, Filters.of_keys([corpus.keys[3]]))
    if kind != "hnsw" or exact_below:  # a graph walk under a one-key selector may miss it; EXACT_BELOW covers that case
        assert keys[0, 0] == corpus.keys[3]
    assert (keys[0, 1:] == -1).all()
    assert (vs.search(corpus.q[:2], 5, Filters.of_keys([12345]))[0] == -1).all()  # nothing allowed: nothing found


@pytest.mark.parametrize("kind", list(INDEX_TYPES))
@pytest.mark.parametrize("transform", ["none", "pca:16", "whiten"])
def test_save_load_roundtrip(kind, transform, corpus, params, tmp_path):
    vs = VectorSet.build(corpus.keys, corpus.x, params(index=kind, transform=transform))
    vs.save(tmp_path)
    back = VectorSet.load(tmp_path)
    assert np.array_equal(back.search(corpus.q, 10)[0], vs.search(corpus.q, 10)[0])
    assert np.array_equal(back.keys, np.sort(corpus.keys))


def test_load_refuses_a_file_that_does_not_match_its_checksum(corpus, params, tmp_path):
    VectorSet.build(corpus.keys[:50], corpus.x[:50], params()).save(tmp_path)
    VectorSet.build(corpus.keys[:5], corpus.x[:5], params()).backend.save(tmp_path)  # a valid but foreign index.faiss
    with pytest.raises(IndexStateError, match="index.faiss"):
        VectorSet.load(tmp_path)


def test_pca_reduces_dimensions_for_documents_and_queries(corpus, params):
    vs = VectorSet.build(corpus.keys, corpus.x, params(transform="pca:16"))
    assert vs.backend.dim == 16 and vs.memory_bytes() < VectorSet.build(corpus.keys, corpus.x,
                                                                        params()).memory_bytes() / 1.5
    found, _ = vs.search(corpus.x[:20], 1)  # documents find themselves through the fitted projection
    assert (found[:, 0] == corpus.keys[:20]).mean() >= 0.95


def test_a_zero_query_finds_nothing(corpus, params):
    vs = VectorSet.build(corpus.keys, corpus.x, params(transform="pca:16"))  # PCA would move zero off the origin
    q = np.vstack([np.zeros(32, np.float32), corpus.q[0]])
    keys, _ = vs.search(q, 5)
    assert (keys[0] == -1).all() and (keys[1] >= 0).all()
    assert (vs.encode_queries(["", "  "]) == 0).all()


@pytest.mark.parametrize("kind", ["flat", "sq8", "ivfpq"])
def test_add_update_delete_by_key(kind, corpus, params):
    vs = VectorSet.build(corpus.keys[:150], corpus.x[:150], params(index=kind))
    vs.add(corpus.keys[150:], corpus.x[150:])
    assert len(vs) == N
    assert vs.remove(corpus.keys[:10]) == 10 and len(vs) == N - 10
    assert not np.isin(vs.search(corpus.q, 20)[0], corpus.keys[:10]).any()
    vs.add(corpus.keys[20:21], corpus.x[199:200])  # update: key 20 now carries doc 199's vector
    pair = np.array([corpus.keys[20], corpus.keys[199]])
    found, scores = vs.search(corpus.x[199:200], 2, Filters.of_keys(pair))  # the two copies score alike
    assert set(found[0]) == set(pair) and scores[0, 0] == pytest.approx(scores[0, 1]) and len(vs) == N - 10
    if kind == "flat":
        assert set(vs.search(corpus.x[199:200], 2)[0][0]) == set(pair)


def test_hnsw_refuses_deletes():
    vs = VectorSet.build(np.arange(3), np.eye(3, 384, dtype=np.float32), check(index="hnsw"))
    with pytest.raises(IndexStateError, match="rebuild"):
        vs.remove(np.array([1]))


# ---- the cache of a real index -----------------------------------------------------------------
def test_cache_is_built_per_commit_updated_incrementally_and_rebuildable(small_index):
    from souk.index.vectors import open_vector_set

    field = small_index.schema.fields["embedding"]
    s1 = small_index.searcher()
    vs1 = open_vector_set(s1, field)
    root = small_index.path / "vectors" / "embedding"
    assert vs1.meta["built"] == "full" and len(vs1) == 60 and (root / s1.commit_id / "index.faiss").exists()
    assert VectorSet.open(s1, field).meta["built"] == "full"  # loaded from the cache, not rebuilt
    q = vs1.encode_queries(["solar panels and wind"])

    gone = [f"doc{i}" for i in range(5)]
    with small_index.writer() as w:
        w.delete(gone)
        w.commit()
    s2 = small_index.searcher()
    vs2 = VectorSet.open(s2, field)
    assert vs2.meta["built"] == "incremental" and len(vs2) == 55
    assert not np.isin(vs2.search(q, 60)[0], doc_keys(gone)).any()
    assert len([p for p in root.iterdir() if not p.name.startswith(".")]) <= KEEP_CACHES

    shutil.rmtree(small_index.path / "vectors")  # the cache is derived: drop it, get the same answers
    vs3 = VectorSet.open(small_index.searcher(), field)
    assert vs3.meta["built"] == "full"
    assert np.array_equal(vs3.search(q, 10)[0], vs2.search(q, 10)[0])
    assert set(s2.keys_to_ids(vs3.search(q, 55)[0][0])) == set(s2.ids())


def test_damaged_cache_is_rebuilt(small_index):
    field = small_index.schema.fields["embedding"]
    s = small_index.searcher()
    VectorSet.open(s, field)
    (small_index.path / "vectors" / "embedding" / s.commit_id / "index.faiss").write_bytes(b"garbage")
    assert len(VectorSet.open(s, field)) == 60


def test_manifest_pins_completed_params_and_schema_keeps_what_was_written(small_index, tiny_encoder):
    from souk.index import Index

    index = Index.open(small_index.path)
    pinned = index.manifest["vectors"]["embedding"]
    assert pinned["dim"] == 32 and pinned["model"] == str(tiny_encoder.resolve()) and pinned["index"] == "flat"
    assert "dim" not in index.schema.fields["embedding"].params
    assert index.manifest["models"]["embedding"]["backend"] == "torch-fp32"


@pytest.fixture
def small_index(tmp_path, tiny_encoder):
    return vector_index(tmp_path, tiny_encoder, 60)


def test_index_creation_checks_vector_params_before_writing(tmp_path):
    from souk.index import Index
    from souk.schema import Schema

    schema = Schema.from_dict({"id": "_id", "fields": {"_id": {"kind": "keyword"}, "text": {"kind": "text"},
                                                       "vec": {"kind": "vector", "params": {"model": "bert-huge"}}}})
    with pytest.raises(ConfigError, match=r"fields.vec.params.model: unknown model 'bert-huge'"):
        Index.create(tmp_path / "index", schema)
    assert not (tmp_path / "index").exists()


# ---- a model inside the index (a fitted bi-encoder) moves with it ------------------------------------------------
def _own_model(index_path, model):
    """`model` published into the index's model store as a fitted bi-encoder is (sealed: files hashed)."""
    from souk.models.store import ModelStore

    store = ModelStore(index_path)
    work = store.new("bi")
    shutil.copytree(model, work, dirs_exist_ok=True)
    return store.publish("bi", work, {"kind": "bi-encoder"}, activate=False)


def _dense_ids(path, text="alpha"):
    from souk.engine import Engine

    return [h.id for h in Engine.open(path).search(text, pipeline="dense", k=5).hits]


def test_a_model_inside_the_index_is_pinned_relative_and_read_where_the_index_now_is(small_index, tiny_encoder,
                                                                                     tmp_path, monkeypatch):
    from souk.index import Index
    from souk.index.vectors import field_params
    from souk.index.vectors.reencode import reencode

    own = _own_model(small_index.path, tiny_encoder)
    reencode(small_index.path, str(own))
    before = _dense_ids(small_index.path)
    manifest = Index.open(small_index.path).manifest
    assert manifest["vectors"]["embedding"]["model"] == "models/bi-1"
    assert manifest["models"]["embedding"]["model"] == "models/bi-1"
    moved = tmp_path / "elsewhere" / "index"
    shutil.move(str(small_index.path), str(moved))  # deployed to another directory: the old one is gone
    index = Index.open(moved)
    assert field_params(index, index.schema.vector_fields[0])["model"] == str((moved / "models" / "bi-1").resolve())

    def rebuilt(*args, **kwargs):
        raise AssertionError("the moved index rebuilt its vector cache")

    monkeypatch.setattr(VectorSet, "build", rebuilt)  # the cache made before the move is still this commit's
    assert _dense_ids(moved) == before


def test_a_copied_index_reads_its_own_model_not_the_originals(small_index, tiny_encoder, tmp_path):
    from souk.index import Index
    from souk.index.vectors import field_params
    from souk.index.vectors.reencode import reencode

    reencode(small_index.path, str(_own_model(small_index.path, tiny_encoder)))
    copy = tmp_path / "copy"
    shutil.copytree(small_index.path, copy)
    index = Index.open(copy)
    assert field_params(index, index.schema.vector_fields[0])["model"] == str((copy / "models" / "bi-1").resolve())


def test_a_manifest_model_path_leaving_the_index_is_refused_without_naming_it(small_index, tiny_encoder):
    from souk.index import Index
    from souk.index.vectors import field_params

    index = Index.open(small_index.path)
    for hostile in ("../../" + tiny_encoder.name, "models/bi\x00-1"):
        index.manifest["vectors"]["embedding"]["model"] = hostile
        with pytest.raises(ConfigError, match="not a place inside the index directory") as err:
            field_params(index, index.schema.vector_fields[0])
        assert tiny_encoder.name not in str(err.value) and "bi" not in str(err.value)


def test_an_index_pinned_absolute_before_finds_its_own_model_once_moved(small_index, tiny_encoder, tmp_path):
    import json

    from souk.index import Index
    from souk.index.vectors import field_params

    _own_model(small_index.path, tiny_encoder)
    manifest_file = small_index.path / "manifest.json"
    data = json.loads(manifest_file.read_text())
    data["vectors"]["embedding"]["model"] = str(tmp_path / "where-it-was-fitted" / "models" / "bi-1")  # gone now
    manifest_file.write_text(json.dumps(data))
    index = Index.open(small_index.path)
    own = str((small_index.path / "models" / "bi-1").resolve())
    assert field_params(index, index.schema.vector_fields[0])["model"] == own
    with index.writer() as w:  # a commit leaves the pins as they are on disk (its copy may be older)
        w.delete(["doc0"])
        w.commit()
    assert Index.open(small_index.path).manifest["vectors"]["embedding"]["model"] == data["vectors"]["embedding"][
        "model"]
    assert len(_dense_ids(small_index.path)) == 5


def test_stats_say_which_path_queries_take_here_and_whether_this_machine_measured_it(tiny_encoder, tmp_path,
                                                                                     monkeypatch):
    pytest.importorskip("onnxruntime")
    from souk.models import choose_backend
    from souk.models.encoder import EncoderConfig

    monkeypatch.setenv("SOUK_CACHE_DIR", str(tmp_path / "cache"))
    index = vector_index(tmp_path, tiny_encoder, 20)  # documents on torch-fp32; queries "exact", nothing measured
    record = index.stats()["models"]["embedding"]
    assert record["here"] == {"query_backend": "onnx-fp32", "measured_here": False}  # written without torch
    choice = choose_backend(EncoderConfig(model=str(tiny_encoder), max_length=record["max_length"]),
                            synthetic_texts(8))
    assert index.stats()["models"]["embedding"]["here"] == {"query_backend": choice["exact"], "measured_here": True}
