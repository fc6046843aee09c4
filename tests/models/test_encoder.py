import json
import time
from dataclasses import replace

import numpy as np
import pytest

from souk.errors import ModelError
from souk.models.encoder import (BACKENDS, CPU_FLAGS, TOLERANCE, Encoder, EncoderConfig, choose_backend, detect_machine,
                                 encode_resumable, get_encoder, model_dir)
from support import DATA, needs_shared

pytestmark = [needs_shared("data", "scifact"), pytest.mark.slow]
FP32 = EncoderConfig(backend="torch-fp32")


@pytest.fixture(scope="module")
def texts() -> list[str]:
    with (DATA / "scifact" / "corpus.jsonl").open() as fh:
        docs = [json.loads(next(fh)) for _ in range(32)]
    return [f"{d['title']} {d['text']}" for d in docs]


@pytest.fixture(scope="module")
def reference(texts) -> np.ndarray:
    return get_encoder(FP32).encode(texts)


def offered() -> list[str]:
    m = detect_machine()
    return [name for name, spec in BACKENDS.items() if spec.missing(m) is None]


def test_machine_is_detected_not_assumed():
    m = detect_machine()
    assert m.flags <= set(CPU_FLAGS) and m.threads >= 1 and m.torch_capability
    assert BACKENDS["torch-fp32"].missing(m) is None
    if not m.flags & {"amx_bf16", "avx512_bf16"}:
        assert "torch-bf16" not in offered()
    if not m.flags & {"amx_int8", "avx512_vnni", "avx_vnni"}:
        assert "onnx-int8" not in offered()


def test_fp32_matches_sentence_transformers(texts, reference):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(model_dir("all-MiniLM-L6-v2")), device="cpu")
    peer = st.encode(texts[:16], normalize_embeddings=True)
    assert np.allclose(reference[:16], peer, atol=1e-4)


# int8 is opt-in: close to fp32, but not near-lossless enough for the automatic choice.
OPT_IN_BOUND = {"onnx-int8": {"cos_mean": 0.99, "cos_min": 0.98}}


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_each_offered_path_stays_within_its_bound(backend, texts, reference):
    if backend not in offered():
        pytest.skip(f"{backend}: {BACKENDS[backend].missing(detect_machine())}")
    vecs = get_encoder(replace(FP32, backend=backend)).encode(texts)
    cos = (vecs * reference).sum(1)
    bound = OPT_IN_BOUND.get(backend, TOLERANCE)
    assert cos.mean() >= bound["cos_mean"] and cos.min() >= bound["cos_min"]
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


def test_auto_choice_is_the_fastest_near_lossless_path(texts):
    choice = choose_backend(FP32, texts)
    eligible = {n: r for n, r in choice["paths"].items()
                if "docs_per_s" in r and r["cos_mean"] >= TOLERANCE["cos_mean"] and r["cos_min"] >= TOLERANCE["cos_min"]}
    assert choice["backend"] == max(eligible, key=lambda n: eligible[n]["docs_per_s"])


def test_length_sorted_batches_keep_input_order(texts, reference):
    mixed = [texts[3], "short", texts[0][:40], texts[7]]
    one_by_one = np.concatenate([get_encoder(FP32).encode([t]) for t in mixed])
    assert np.allclose(get_encoder(FP32).encode(mixed), one_by_one, atol=1e-5)
    assert get_encoder(FP32).encode([]).shape == (0, 384)


def test_resume_reuses_finished_chunks(tmp_path, texts):
    enc = get_encoder(FP32)
    first = encode_resumable(enc, texts[:16], tmp_path, chunk=8, progress=False)  # "interrupted" after 2 chunks
    done = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*.npy")}
    assert len(done) == 2
    time.sleep(0.01)
    full = encode_resumable(enc, texts[:24], tmp_path, chunk=8, progress=False)
    assert len(list(tmp_path.glob("*.npy"))) == 3
    assert all(p.stat().st_mtime_ns == t for p, t in done.items())  # not recomputed
    assert np.array_equal(full[:16], first)
    assert np.allclose(full[16:], enc.encode(texts[16:24]), atol=1e-6)


def test_auto_picks_a_path_within_tolerance_and_remembers(texts):
    choice = choose_backend(EncoderConfig(), texts)
    assert choice["backend"] in offered()
    chosen = choice["paths"][choice["backend"]]
    assert chosen["cos_mean"] >= TOLERANCE["cos_mean"]
    assert chosen["docs_per_s"] == max(r["docs_per_s"] for r in choice["paths"].values()
                                       if "docs_per_s" in r and r["cos_mean"] >= TOLERANCE["cos_mean"] and r["cos_min"] >= TOLERANCE["cos_min"])
    assert choose_backend(EncoderConfig(), texts) == choice  # cached per machine, not re-measured
    assert get_encoder(EncoderConfig(), texts).backend == choice["backend"]


def test_unknown_model_or_backend_says_what_is_known():
    with pytest.raises(ModelError, match="all-MiniLM-L6-v2"):
        model_dir("bert-huge")
    with pytest.raises(ModelError, match="onnx-int8"):
        Encoder(EncoderConfig(backend="tpu"))


def test_text_coverage_counts_han_for_an_english_only_model():
    from souk.models.encoder import text_coverage

    assert text_coverage("all-MiniLM-L6-v2", "running shoes") == 1.0
    assert text_coverage("all-MiniLM-L6-v2", "跑步鞋") == 0.0
    assert text_coverage("all-MiniLM-L6-v2", "ab 跑步") == 0.5
    assert text_coverage("all-MiniLM-L6-v2", "  ") == 1.0
