"""Encoding on a local Ray cluster (one per session, see conftest `ray_local`): the same vectors as the
local encoder, the driver the only writer."""
import json

import numpy as np
import pytest

from model_fakes import synthetic_texts
from support import run_main

@pytest.mark.slow
def test_the_actor_pool_gives_the_local_vectors(ray_local, tiny_encoder):
    from types import SimpleNamespace

    from souk.index.vectors import encode_documents, validate_params
    from souk.index.vectors.ray_encoding import encode_on_ray

    params = validate_params(SimpleNamespace(name="e", params={"model": str(tiny_encoder), "backend": "torch-fp32"}))
    texts = synthetic_texts(150)
    remote = encode_on_ray(params, texts, actors=2)
    local = encode_documents(params, texts, progress=False)
    cos = (remote * local).sum(1) / np.linalg.norm(remote, axis=1) / np.linalg.norm(local, axis=1)
    assert remote.shape == local.shape and cos.min() >= 0.9999


@pytest.mark.slow
def test_index_with_ray_stores_the_same_vectors(ray_local, tiny_encoder, tmp_path, monkeypatch):
    import souk.models.checkpoints as checkpoints
    from souk.index import Index
    from souk.index.vectors.cache import stored_vectors
    from souk.index.vectors.config import field_params

    docs = [{"_id": f"d{i}", "text": t} for i, t in enumerate(synthetic_texts(90))]
    docs.append({"_id": "bad", "text": {"not": "text"}})
    cat = tmp_path / "c.jsonl"
    cat.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    schema = tmp_path / "s.toml"
    schema.write_text(f'id = "_id"\n[fields._id]\nkind = "keyword"\n[fields.text]\nkind = "text"\n'
                      '[fields.embedding]\nkind = "vector"\nparams = '
                      f'{{ model = "{tiny_encoder}", backend = "torch-fp32" }}\n')
    stored = {}
    encoded_here = []
    real = checkpoints.encode_resumable
    monkeypatch.setattr(checkpoints, "encode_resumable", lambda enc, texts, **kw: encoded_here.extend(texts)
                        or real(enc, texts, **kw))
    for name, extra in (("local", []), ("ray", ["--ray", "auto"])):
        encoded_here.clear()
        out = run_main("index", str(cat), "--index", str(tmp_path / name), "--schema", str(schema), "--on-error",
                       "skip",
                       "--commit-every", "40", "--json", *extra)
        assert json.loads(out.stdout.splitlines()[-1])["docs"] == 90
        index = Index.open(tmp_path / name)
        vf = index.schema.vector_fields[0]
        keys, vectors = stored_vectors(index.searcher(), vf.name, field_params(index, vf))
        stored[name] = vectors[np.argsort(keys)]
        assert len(encoded_here) == (90 if name == "local" else 0)  # with Ray, the driver encodes nothing
    a, b = stored["local"], stored["ray"]
    assert ((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min() >= 0.9999


@pytest.mark.slow
def test_ray_without_vectors_is_refused(ray_local, tmp_path):
    cat = tmp_path / "c.jsonl"
    cat.write_text('{"id": "1", "title": "a"}\n')
    out = run_main("index", str(cat), "--index", str(tmp_path / "ix"), "--ray", "auto", "--json", check=False)
    assert out.returncode == 2 and "--vectors" in out.stderr


@pytest.mark.slow
def test_reencode_on_ray_matches_the_local_encoder(ray_local, tiny_encoder, tiny_english_encoder, tmp_path,
                                                   monkeypatch):
    import souk.models.checkpoints as checkpoints
    from souk.index import Index
    from souk.index.vectors import encode_documents
    from souk.index.vectors.cache import stored_vectors
    from souk.index.vectors.config import field_params
    from souk.index.vectors.encoding import document_texts
    from souk.index.vectors.reencode import reencode
    from model_fakes import vector_index

    index = vector_index(tmp_path, tiny_encoder, 60)
    real, encoded_here = checkpoints.encode_resumable, []
    monkeypatch.setattr(checkpoints, "encode_resumable", lambda enc, texts, **kw: encoded_here.extend(texts)
                        or real(enc, texts, **kw))
    out = reencode(index.path, str(tiny_english_encoder), ray="auto")
    assert not encoded_here  # the actors encoded every document
    monkeypatch.setattr(checkpoints, "encode_resumable", real)
    assert out["docs"] == 60
    index = Index.open(index.path)
    vf = index.schema.vector_fields[0]
    params = field_params(index, vf)
    assert params["model"] == str(tiny_english_encoder)
    searcher = index.searcher()
    keys, vectors = stored_vectors(searcher, vf.name, params)
    docs = searcher.docs(searcher.keys_to_ids(keys))
    local = encode_documents(params, document_texts(index.schema, params, docs), progress=False)
    assert ((vectors * local).sum(1) / np.linalg.norm(vectors, axis=1) / np.linalg.norm(local, axis=1)).min() >= 0.9999


def test_actors_ask_for_a_gpu_only_where_the_cluster_has_one():
    from souk.index.vectors.ray_encoding import ACTOR_CPUS, actor_resources

    assert actor_resources({"CPU": 2.0, "memory": 1e9}) == {"num_cpus": ACTOR_CPUS}
    assert actor_resources({"CPU": 16.0, "GPU": 2.0}) == {"num_cpus": ACTOR_CPUS, "num_gpus": 1.0}
    assert actor_resources({"CPU": 16.0, "GPU": 0.5}) == {"num_cpus": ACTOR_CPUS}  # no whole GPU for an actor


def test_an_actor_given_a_gpu_on_a_machine_without_cuda_encodes_as_on_cpu(tiny_encoder):
    from types import SimpleNamespace

    from souk.index.vectors import encode_documents, validate_params
    from souk.index.vectors.ray_encoding import _EncodeBatch

    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the actor would encode on it")
    params = validate_params(SimpleNamespace(name="e", params={"model": str(tiny_encoder), "backend": "torch-fp32"}))
    texts = synthetic_texts(20)
    out = _EncodeBatch(params, "torch-fp32", 1, gpu=True)({"row": np.arange(20), "text": np.array(texts)})
    assert np.allclose(out["vector"], encode_documents(params, texts, progress=False), atol=1e-5)
