"""Cross-encoder inputs, mixing, caching and model directories (tiny tokenizer; one test loads MiniLM)."""
from __future__ import annotations

import numpy as np
import pytest

from souk.errors import ModelError
from souk.models.cross_encoder import (PATHS, Combination, CrossEncoder, FieldLimits, PairPacker, TokenCache,
                                       choose_path,
                                       minmax)
from tiny_bert import tiny_tokenizer

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau".split()


@pytest.fixture(scope="module")
def packer(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tok")
    tiny_tokenizer(folder, [" ".join(WORDS)])
    return PairPacker(folder / "tokenizer.json", FieldLimits(max_length=24, query=4, title=6))


def test_the_title_gets_its_budget_before_a_long_text(packer):
    q = packer.tokens(["alpha beta gamma delta epsilon zeta"], packer.limits.query)[0]
    [doc] = packer.doc_tokens([("pi rho sigma", " ".join(WORDS * 5))])
    ids, types = packer.pack(q, doc)
    assert len(ids) == 24 and len(types) == 24
    cls, sep = packer.cls, packer.sep
    assert ids[0] == cls and ids[-1] == sep and ids.count(sep) == 3
    first, second = ids.index(sep), ids.index(sep, ids.index(sep) + 1)
    assert first == 1 + 4                                        # the query is cut to its budget
    assert ids[first + 1:second] == doc[0]                       # the whole title, then the text fills the rest
    assert types[:first + 1] == [0] * (first + 1) and set(types[first + 1:]) == {1}


def test_a_document_without_title_or_text_still_packs(packer):
    q = packer.tokens(["alpha"], 4)[0]
    ids, _ = packer.pack(q, packer.doc_tokens([("", "beta gamma")])[0])
    assert ids.count(packer.sep) == 2
    ids, _ = packer.pack(q, packer.doc_tokens([("", "")])[0])
    assert ids == [packer.cls, *q, packer.sep, packer.sep]


def test_batches_keep_the_input_order_under_length_sorting(packer):
    q = packer.tokens(["alpha"], 4)[0]
    pairs = [packer.pack(q, d) for d in packer.doc_tokens([("beta", "gamma " * n) for n in (1, 9, 3, 5)])]
    seen = {}
    for rows, ids, types, mask in packer.batches(pairs, 3):
        for j, r in enumerate(rows):
            seen[int(r)] = ids[j][mask[j] == 1].tolist()
    assert [seen[i] for i in range(4)] == [p[0] for p in pairs]


def test_limits_are_checked():
    with pytest.raises(ModelError, match="max_length"):
        FieldLimits(max_length=8)
    with pytest.raises(ModelError, match="room"):
        FieldLimits(max_length=32, query=30)


def test_the_mix_scales_each_list_and_weighs_them():
    cross, prior = np.array([0.0, 10.0, 5.0]), np.array([3.0, 1.0, 2.0])
    assert np.array_equal(Combination(1.0).apply(cross, prior), cross.astype(np.float32))
    assert np.argsort(-Combination(0.0).apply(cross, prior)).tolist() == [0, 2, 1]
    assert np.allclose(Combination(0.5).apply(cross, prior), 0.5 * minmax(cross) + 0.5 * minmax(prior))
    assert minmax(np.array([2.0, 2.0])).tolist() == [0.0, 0.0]
    assert minmax(np.array([np.nan, 1.0, 3.0])).tolist() == [0.0, 0.0, 1.0]


def test_token_cache_loads_missing_ids_once_and_drops_the_oldest():
    calls = []
    cache = TokenCache(capacity=2)
    load = lambda ids: calls.append(list(ids)) or [([len(i)], []) for i in ids]  # noqa: E731
    assert cache.get_many(["a", "bb", "a"], load) == [([1], []), ([2], []), ([1], [])]
    cache.get_many(["bb", "ccc"], load)
    assert calls == [["a", "bb"], ["ccc"]]
    cache.get_many(["a"], load)
    assert calls[-1] == ["a"]  # evicted as the least recently used


@pytest.mark.slow
def test_a_model_directory_round_trips_and_the_path_choice_is_cached(tiny_cross, monkeypatch, tmp_path):
    monkeypatch.setenv("SOUK_CACHE_DIR", str(tmp_path))
    path = tiny_cross["index"] / "models" / tiny_cross["outcome"].model
    unmeasured = CrossEncoder(path)  # nothing measured here: the unmeasured path, and no measuring
    assert unmeasured.backend == "onnx-fp32" and not list(tmp_path.glob("models/cross-choice-*.json"))
    docs = [(f"t{i} {c}", "kit set") for i in range(6) for c in ("red", "blue")]
    ref = CrossEncoder(path, backend="torch-fp32").score("t3 red", docs)
    np.testing.assert_allclose(unmeasured.score("t3 red", docs), ref, rtol=1e-4, atol=1e-5)  # exact: fp32
    verdict = choose_path(path, unmeasured.packer)
    assert verdict["paths"]["torch-fp32"]["corr"] == pytest.approx(1.0)
    assert list(tmp_path.glob("models/cross-choice-*.json"))
    model = CrossEncoder(path)  # the measured path now
    assert model.backend in PATHS and model.packer.limits.max_length == 64
    assert np.corrcoef(model.score("t3 red", docs), ref)[0, 1] >= 0.999  # the chosen path keeps the order
    assert verdict["backend"] == model.backend and all(r.get("corr", 1) >= 0.9 for r in verdict["paths"].values())
    with pytest.raises(ModelError, match="not a souk model directory"):
        CrossEncoder(tmp_path)


def test_minilm_packs_a_long_document_to_its_budget():
    from souk.models.registry import model_card

    base = model_card("all-MiniLM-L6-v2").path
    packer = PairPacker(base / "tokenizer.json", FieldLimits())
    ids, _ = packer.pack(packer.tokens(["does aspirin help?"], 32)[0],
                         packer.doc_tokens([("Aspirin", "word " * 400)])[0])
    assert len(ids) == FieldLimits().max_length and packer.tok.id_to_token(ids[0]) == "[CLS]"


def test_a_long_text_is_tokenized_from_its_head_with_the_same_ids():
    """Texts cut at whitespace past `HEAD_CHARS_PER_TOKEN` characters a token give the ids of the whole text;
    one whose head holds too few tokens (long words) is tokenized whole; one without whitespace is kept."""
    from souk.models.cross_encoder import text_head
    from souk.models.registry import model_card

    rng = np.random.default_rng(0)
    words = ["aspirin", "a", "of", "immunohistochemistry", "p53-dependent", "5", "(CI", "95%)", "naïve", "蛋白质",
             "x" * 120, "Glu-tamate", "\n", "tumour\tcells"]
    texts = [" ".join(rng.choice(words, int(rng.integers(1, 400))).tolist()) for _ in range(200)]
    texts += ["supercalifragilistic " * 200, "".join(["ab"] * 2000), "word " * 400, ""]
    packer = PairPacker(model_card("all-MiniLM-L6-v2").path / "tokenizer.json", FieldLimits(max_length=32))
    assert packer._words_split
    docs = [("a title", t) for t in texts]
    fast = packer.doc_tokens(docs)
    packer._words_split = False
    assert fast == packer.doc_tokens(docs)
    assert text_head("ab cd ef", 3) == "ab cd" and text_head("abcdefgh", 3) == "abcdefgh" and text_head("ab", 3) == "ab"


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.floats(0, 1), flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 7)), max_size=3),
       file=st.sampled_from(["model.safetensors", "config.json", "tokenizer.json"]))
def test_property_damaged_cross_encoder_files_load_or_are_unavailable(tiny_cross, tmp_path_factory, cut, flips, file):
    """Truncated or bit-flipped weights, config or tokenizer, with the hashes rewritten to match (so the loaders
    themselves are tested): the model loads and scores finite numbers, or `ModelUnavailable`; nothing else."""
    import shutil

    from souk.errors import ModelUnavailable
    from souk.models.store import seal

    path = tmp_path_factory.mktemp("damaged") / "cross-1"
    shutil.copytree(tiny_cross["index"] / "models" / tiny_cross["outcome"].model, path)
    data = bytearray((path / file).read_bytes())
    data = data[: int(len(data) * cut)] if cut < 0.5 else data
    for where, bit in flips:
        if data:
            data[int(where * len(data))] ^= 1 << bit
    (path / file).write_bytes(bytes(data))
    seal(path)
    try:
        model = CrossEncoder(path, backend="torch-fp32")
    except ModelUnavailable as e:
        assert str(e).startswith("model cross-1") and "\n" not in str(e)
        return
    except ModelError as e:  # a manifest-level refusal (e.g. limits); still one clear line
        assert "\n" not in str(e)
        return
    scores = model.score("t1 red", [("t1 red", "kit"), ("t2 blue", "set")])
    assert scores.shape == (2,)


@pytest.mark.parametrize("backend", ["torch-fp32", "onnx-fp32"])
def test_a_config_naming_an_unknown_pooling_is_unavailable_on_every_path(tiny_cross, monkeypatch, tmp_path, backend):
    """config.json is untrusted: `souk_pooling` other than cls or mean (hashes rewritten to match) is refused with
    one line naming the model, not a path, on torch and on the exported paths (whose writer refuses it too, and
    whose traced fallback reads the same check)."""
    import json
    import shutil

    from souk.errors import ModelUnavailable
    from souk.models.store import seal

    monkeypatch.setenv("SOUK_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "cross-9"
    shutil.copytree(tiny_cross["index"] / "models" / tiny_cross["outcome"].model, path)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps(config | {"souk_pooling": "max"}))
    seal(path)
    with pytest.raises(ModelUnavailable, match="souk_pooling") as e:
        CrossEncoder(path, backend=backend).score("t1 red", [("t1 red", "kit")])
    assert str(e.value).startswith("model cross-9") and str(tmp_path) not in str(e.value)


def test_the_exported_exact_paths_score_as_torch_fp32(tiny_cross, monkeypatch, tmp_path):
    monkeypatch.setenv("SOUK_CACHE_DIR", str(tmp_path))
    path = tiny_cross["index"] / "models" / tiny_cross["outcome"].model
    docs = [(f"t{i} {c}", "kit set " * i) for i in range(6) for c in ("red", "blue")]
    ref = CrossEncoder(path, backend="torch-fp32").score("t3 red", docs)
    for backend in ("onnx-fp32", "openvino-fp32"):
        got = CrossEncoder(path, backend=backend).score("t3 red", docs)
        assert np.allclose(got, ref, atol=1e-4), backend
    assert len(list(tmp_path.glob("models/cross-*-onnx*/model.onnx"))) == 1  # one export, shared by both paths


def test_onnx_fp32_splits_a_querys_pairs_across_single_threaded_runs(tiny_cross, monkeypatch, tmp_path):
    pytest.importorskip("onnxruntime")
    from souk.models.backends import OrtStreams, ort_session
    from souk.models.cross_encoder import INPUTS, onnx_export

    monkeypatch.setenv("SOUK_CACHE_DIR", str(tmp_path))
    path = tiny_cross["index"] / "models" / tiny_cross["outcome"].model
    model = CrossEncoder(path, backend="onnx-fp32")
    docs = [(f"t{i} {c}", "kit set " * i) for i in range(6) for c in ("red", "blue")]
    q = model.packer.tokens(["t3 red"], model.packer.limits.query)[0]
    pairs = [model.packer.pack(q, d) for d in model.packer.doc_tokens(docs)]
    (_, ids, types, mask), = model.packer.batches(pairs, 32)
    inputs = dict(zip(INPUTS, (ids, types, mask)))
    whole = ort_session(onnx_export(path), 1).run(None, inputs)[0]
    streams = OrtStreams(onnx_export(path), 2)
    seen = []
    run = streams.session.run
    monkeypatch.setattr(streams, "session", type("S", (), {"run": lambda self, o, p: seen.append(len(p["input_ids"]))
                                                           or run(o, p)})())
    assert np.allclose(streams.run(inputs), whole, atol=1e-5)  # the pairs split in two runs, put back in order
    assert sorted(seen) != [len(pairs)] and sum(seen) == len(pairs)
    assert np.allclose(model.score("t3 red", docs), CrossEncoder(path, backend="torch-fp32").score("t3 red", docs),
                       atol=1e-4)
