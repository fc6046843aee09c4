import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

import souk.index.vectors as vectors
from souk.errors import ConfigError, IndexStateError
from souk.index.keys import doc_keys
from souk.index.vectors import INDEX_TYPES, VectorSet, validate_params
from souk.models.encoder import EncoderConfig, encode_resumable, get_encoder
from support import DATA, needs_shared

N = 200
MIN_RECALL = {"flat": 1.0, "hnsw": 0.95, "sq8": 0.9, "ivfpq": 0.25}  # ivfpq: 200 docs train a coarse 2-bit PQ


def params(**kw):
    return validate_params(SimpleNamespace(name="embedding", params=kw))


# ---- params: pure, no data needed -------------------------------------------------------------
def test_params_are_completed_and_idempotent():
    p = params()
    assert p["dim"] == 384 and p["index"] == "flat" and p["normalize"] is True and p["transform"] == "none"
    assert validate_params(SimpleNamespace(name="embedding", params=p)) == p


@pytest.mark.parametrize("bad, key", [
    ({"index": "annoy"}, "index"), ({"transform": "pca:999"}, "transform"), ({"max_length": "long"}, "max_length"),
    ({"dim": 768}, "dim"), ({"normalise": True}, "normalise"), ({"model": "bert-huge"}, "model"),
    ({"backend": "tpu"}, "backend"), ({"source": "title"}, "source"),
])
def test_bad_params_name_the_key(bad, key):
    with pytest.raises(ConfigError, match=key):
        params(**bad)


# ---- on real embeddings ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus():
    if not (DATA / "scifact").exists():
        pytest.skip(f"needs {DATA / 'scifact'} (the shared data beside the repo), absent here")
    with (DATA / "scifact" / "corpus.jsonl").open() as fh:
        docs = [json.loads(next(fh)) for _ in range(N)]
    with (DATA / "scifact" / "queries.jsonl").open() as fh:
        queries = [json.loads(next(fh))["text"] for _ in range(40)]
    texts = [f"{d['title']} {d['text']}" for d in docs]
    enc = get_encoder(EncoderConfig(), texts)
    return SimpleNamespace(docs=docs, keys=doc_keys([d["_id"] for d in docs]), x=encode_resumable(enc, texts, progress=False),
                           q=enc.encode(queries))


def brute(x, keys, q, k, allowed=None):
    mask = np.ones(len(keys), bool) if allowed is None else np.isin(keys, allowed)
    sims = q @ x[mask].T
    return keys[mask][np.argsort(-sims, axis=1, kind="stable")[:, :k]]


@pytest.mark.parametrize("kind", list(INDEX_TYPES))
def test_recall_against_exact_search(kind, corpus):
    vs = VectorSet.build(corpus.keys, corpus.x, params(index=kind))
    found, scores = vs.search(corpus.q, 10)
    truth = brute(corpus.x, corpus.keys, corpus.q, 10)
    recall = np.mean([len(np.intersect1d(a, b)) / 10 for a, b in zip(found, truth)])
    assert recall >= MIN_RECALL[kind]
    assert np.all(np.diff(scores, axis=1) <= 1e-5)


@pytest.mark.parametrize("kind", list(INDEX_TYPES))
@pytest.mark.parametrize("exact_below", [vectors.EXACT_BELOW, 0])  # exact scoring of small sets, and FAISS selectors
def test_filters_restrict_results(kind, exact_below, corpus, monkeypatch):
    monkeypatch.setattr(vectors, "EXACT_BELOW", exact_below)
    vs = VectorSet.build(corpus.keys, corpus.x, params(index=kind))
    allowed = np.concatenate([corpus.keys[::9], [12345]])  # an unknown key is ignored
    found, _ = vs.search(corpus.q, 5, allowed)
    assert np.isin(found[found >= 0], allowed).all()
    if kind == "flat":
        assert np.array_equal(found, brute(corpus.x, corpus.keys, corpus.q, 5, allowed))
    keys, _ = vs.search(corpus.q[:1], 5, np.array([corpus.keys[3]]))
    assert keys[0, 0] == corpus.keys[3] and (keys[0, 1:] == -1).all()


@pytest.mark.parametrize("kind", list(INDEX_TYPES))
@pytest.mark.parametrize("transform", ["none", "pca:64", "whiten"])
def test_save_load_roundtrip(kind, transform, corpus, tmp_path):
    vs = VectorSet.build(corpus.keys, corpus.x, params(index=kind, transform=transform))
    vs.save(tmp_path)
    back = VectorSet.load(tmp_path)
    assert np.array_equal(back.search(corpus.q, 10)[0], vs.search(corpus.q, 10)[0])
    assert np.array_equal(back.keys, np.sort(corpus.keys))


def test_pca_reduces_dimensions_for_documents_and_queries(corpus):
    vs = VectorSet.build(corpus.keys, corpus.x, params(transform="pca:64"))
    assert vs.index.d == 64 and vs.memory_bytes() < VectorSet.build(corpus.keys, corpus.x, params()).memory_bytes() / 4
    found, _ = vs.search(corpus.x[:20], 1)  # documents find themselves through the fitted projection
    assert (found[:, 0] == corpus.keys[:20]).mean() >= 0.95


@pytest.mark.parametrize("kind", ["flat", "sq8", "ivfpq"])
def test_add_update_delete_by_key(kind, corpus):
    vs = VectorSet.build(corpus.keys[:150], corpus.x[:150], params(index=kind))
    vs.add(corpus.keys[150:], corpus.x[150:])
    assert len(vs) == N
    assert vs.remove(corpus.keys[:10]) == 10 and len(vs) == N - 10
    assert not np.isin(vs.search(corpus.q, 20)[0], corpus.keys[:10]).any()
    vs.add(corpus.keys[20:21], corpus.x[199:200])  # update: key 20 now carries doc 199's vector
    found, _ = vs.search(corpus.x[199:200], 2)
    assert set(found[0]) == {corpus.keys[20], corpus.keys[199]} and len(vs) == N - 10


def test_hnsw_refuses_deletes():
    vs = VectorSet.build(np.arange(3), np.eye(3, 384, dtype=np.float32), params(index="hnsw"))
    with pytest.raises(IndexStateError, match="rebuild"):
        vs.remove(np.array([1]))


# ---- the cache of a real index -----------------------------------------------------------------
@pytest.fixture
def small_index(tmp_path, corpus):
    from souk.catalogs import read_catalog
    from souk.index import Index
    from souk.schema import Schema

    beir = tmp_path / "beir"
    beir.mkdir()
    (beir / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus.docs[:60]))
    schema = Schema.from_dict({"id": "_id", "fields": {
        "_id": {"kind": "keyword"}, "title": {"kind": "stored"}, "text": {"kind": "stored"},
        "all": {"kind": "text", "copy_from": ["title", "text"]},
        "embedding": {"kind": "vector", "params": {"source": ["title", "text"], "index": "sq8"}}}})
    index = Index.create(tmp_path / "index", schema)
    with index.writer() as w:
        w.add(read_catalog(beir))
        w.commit()
    return index


def test_cache_is_built_per_commit_updated_incrementally_and_rebuildable(small_index, corpus):
    field = small_index.schema.fields["embedding"]
    s1 = small_index.searcher()
    vs1 = VectorSet.open(s1, field)
    root = small_index.path / "vectors" / "embedding"
    assert vs1.meta["built"] == "full" and len(vs1) == 60 and (root / s1.commit_id / "index.faiss").exists()
    assert VectorSet.open(s1, field).meta["built"] == "full"  # loaded from the cache, not rebuilt
    q = vs1.encode_queries(["fibroblast growth factor"])

    with small_index.writer() as w:
        w.delete([d["_id"] for d in corpus.docs[:5]])
        w.commit()
    s2 = small_index.searcher()
    vs2 = VectorSet.open(s2, field)
    assert vs2.meta["built"] == "incremental" and len(vs2) == 55
    assert not np.isin(vs2.search(q, 60)[0], corpus.keys[:5]).any()
    assert len([p for p in root.iterdir() if not p.name.startswith(".")]) <= vectors.KEEP_CACHES

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
