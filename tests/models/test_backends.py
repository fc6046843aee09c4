"""Inference paths agree with fp32, and `auto` picks a path whose measured agreement clears the bar."""
import json
import shutil

import numpy as np
import pytest

from souk.errors import ModelError
from souk.models import EncoderConfig, get_encoder
from souk.models.backends import BACKENDS, TOLERANCE, choose_backend, tolerance, verdict
from souk.models.machine import detect_machine
from model_fakes import synthetic_texts
from support import FIXTURES

PROBE = synthetic_texts(48, seed=3)
OPT_IN_BOUND = {"onnx-int8": {"cos_mean": 0.99, "cos_min": 0.98}}  # onnx-int8 is opt-in: close, not near-lossless


def cosines(a, b):
    return (a * b).sum(1)


def test_verdict_takes_the_fastest_path_within_tolerance():
    report = {"torch-fp32": {"docs_per_s": 10.0, "cos_mean": 1.0, "cos_min": 1.0},
              "torch-bf16": {"docs_per_s": 30.0, "cos_mean": 0.9999, "cos_min": 0.999},
              "onnx-int8": {"docs_per_s": 90.0, "cos_mean": 0.993, "cos_min": 0.986},  # fastest, but lossy
              "other": {"skipped": "no instructions"}}
    assert verdict(report, detect_machine())["backend"] == "torch-bf16"
    report["torch-bf16"]["cos_min"] = 0.98
    assert verdict(report, detect_machine())["backend"] == "torch-fp32"
    report["openvino-int8"] = {"docs_per_s": 80.0, "cos_mean": 0.997, "cos_min": 0.994}  # int8 within its own bar
    assert verdict(report, detect_machine())["backend"] == "openvino-int8"
    assert verdict(report, detect_machine())["exact"] == "torch-fp32"  # bf16 failed its bar; nothing lighter measured
    report["onnx-fp32"] = {"docs_per_s": 20.0, "cos_mean": 1.0, "cos_min": 0.99999}
    assert verdict(report, detect_machine())["exact"] == "onnx-fp32"  # exact and loads without torch
    report["openvino-int8"]["docs_per_s"] = 28.0  # within its bar, but 1.4x the fastest exact path: not worth it
    assert verdict(report, detect_machine())["backend"] == "onnx-fp32"
    with pytest.raises(ModelError, match="tolerance"):
        verdict({"onnx-int8": report["onnx-int8"]}, detect_machine())


def test_bf16_agrees_with_fp32(tiny_encoder):
    """bf16 runs on any CPU torch supports (slowly without bf16 instructions); its output must stay near fp32."""
    config = EncoderConfig(model=str(tiny_encoder), backend="torch-fp32")
    fp32 = get_encoder(config).encode(PROBE)
    bf16 = get_encoder(EncoderConfig(model=str(tiny_encoder), backend="torch-bf16")).encode(PROBE)
    cos = cosines(fp32, bf16)
    assert cos.mean() >= TOLERANCE["cos_mean"] and cos.min() >= TOLERANCE["cos_min"]
    assert not np.array_equal(fp32, bf16)  # it really ran in bf16


@pytest.mark.slow
def test_auto_picks_a_path_whose_agreement_clears_the_bar(tiny_encoder, tmp_path, monkeypatch):
    monkeypatch.setenv("SOUK_CACHE_DIR", str(tmp_path))
    config = EncoderConfig(model=str(tiny_encoder))
    choice = choose_backend(config, PROBE)
    offered = {n for n, s in BACKENDS.items() if s.missing(detect_machine()) is None}
    assert choice["backend"] in offered and set(choice["paths"]) == set(BACKENDS)
    ours = get_encoder(config, PROBE).encode(PROBE)  # measured independently of the report
    ref = get_encoder(EncoderConfig(model=str(tiny_encoder), backend="torch-fp32")).encode(PROBE)
    cos = cosines(ours, ref)
    assert cos.mean() >= TOLERANCE["cos_mean"] and cos.min() >= TOLERANCE["cos_min"], choice
    saved = next((tmp_path / "models").glob("choice-*.json"))
    stamp = saved.stat().st_mtime_ns
    assert choose_backend(config, PROBE) == choice and saved.stat().st_mtime_ns == stamp  # remembered, not re-measured
    assert json.loads(saved.read_text())["backend"] == choice["backend"]


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "torch-fp32"])
def test_each_offered_path_stays_within_its_bound(backend, tiny_encoder, tmp_path, monkeypatch):
    why = BACKENDS[backend].missing(detect_machine())
    if why:
        pytest.skip(f"{backend}: {why}")
    monkeypatch.setenv("SOUK_CACHE_DIR", str(tmp_path))  # the ONNX export goes there
    ref = get_encoder(EncoderConfig(model=str(tiny_encoder), backend="torch-fp32")).encode(PROBE)
    vecs = get_encoder(EncoderConfig(model=str(tiny_encoder), backend=backend)).encode(PROBE)
    bound = OPT_IN_BOUND.get(backend, tolerance(backend))
    cos = cosines(vecs, ref)
    assert cos.mean() >= bound["cos_mean"] and cos.min() >= bound["cos_min"]
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


# ---- the real MiniLM ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def texts() -> list[str]:
    docs = [json.loads(line) for line in (FIXTURES / "beir-mini" / "corpus.jsonl").read_text().splitlines()]
    return [f"{d['title']} {d['text']}" for d in docs] + synthetic_texts(24, seed=5, lo=30, hi=80)


@pytest.mark.slow
def test_minilm_fp32_matches_sentence_transformers(texts):
    from sentence_transformers import SentenceTransformer

    from souk.models import model_card

    ours = get_encoder(EncoderConfig(backend="torch-fp32")).encode(texts)
    peer = SentenceTransformer(str(model_card("all-MiniLM-L6-v2").path), device="cpu").encode(
        texts, normalize_embeddings=True
    )
    assert np.allclose(ours, peer, atol=1e-4)


@pytest.mark.slow
def test_minilm_bf16_agrees_with_fp32(texts):
    fp32 = get_encoder(EncoderConfig(backend="torch-fp32")).encode(texts)
    bf16 = get_encoder(EncoderConfig(backend="torch-bf16")).encode(texts)
    cos = cosines(fp32, bf16)
    assert cos.mean() >= TOLERANCE["cos_mean"] and cos.min() >= TOLERANCE["cos_min"]


# ---- exports, AVX2 capping, exact queries ---------------------------------------------------------
def test_exports_are_built_once_and_rebuilt_when_damaged_or_foreign(tiny_encoder, tmp_path, monkeypatch):
    import os

    from souk.models.backends import exported
    from souk.models.registry import model_card

    monkeypatch.setenv("SOUK_CACHE_DIR", str(tmp_path))
    card, builds = model_card(str(tiny_encoder)), []

    def build(folder):
        builds.append(folder)
        (folder / "model.bin").write_bytes(b"weights" * 10)

    out = exported(card, "test", build)
    assert exported(card, "test", build) == out and len(builds) == 1  # verified, reused
    assert (out / "verified.json").exists() and exported(card, "test", build) == out and len(builds) == 1
    (out / "model.bin").write_bytes(b"tampered")
    assert (
        exported(card, "test", build) == out
        and len(builds) == 2
        and (out / "model.bin").read_bytes() == b"weights" * 10
    )
    (out / "extra.onnx").write_bytes(b"x")  # a file the export did not list
    exported(card, "test", build)
    assert len(builds) == 3 and not (out / "extra.onnx").exists()
    os.chmod(out / "model.bin", 0o666)  # writable by anyone: not trusted
    exported(card, "test", build)
    assert len(builds) == 4


def test_capped_to_avx2_offers_only_paths_that_run_there(monkeypatch):
    from souk.models.backends import capped_to_avx2

    m = detect_machine()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert capped_to_avx2()
    for name in ("torch-bf16", "onnx-fp32", "onnx-int8", "openvino-int8", "openvino-bf16"):
        assert BACKENDS[name].missing(m), name  # bf16/VNNI capped away; onnxruntime cannot be capped
    assert BACKENDS["torch-fp32"].missing(m) is None


@pytest.mark.slow
def test_exact_queries_use_the_fastest_exact_path_measured_and_never_measure(tiny_encoder, tmp_path, monkeypatch):
    from souk.models.backends import cached_choice

    monkeypatch.setenv("SOUK_CACHE_DIR", str(tmp_path))
    config = EncoderConfig(model=str(tiny_encoder), backend="exact")
    assert cached_choice(config) is None
    unmeasured = "onnx-fp32" if BACKENDS["onnx-fp32"].missing(detect_machine()) is None else "torch-fp32"
    assert get_encoder(config).backend == unmeasured  # nothing measured: exact, written without torch, no probe run
    assert not (tmp_path / "models").exists() or not list((tmp_path / "models").glob("choice-*.json"))
    choice = choose_backend(EncoderConfig(model=str(tiny_encoder)), PROBE)
    assert choice["exact"] in BACKENDS and "int8" not in choice["exact"]
    assert get_encoder(config).backend == choice["exact"]


def test_unmeasured_exact_queries_take_onnx_written_without_torch(tiny_encoder, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    from souk.models.backends import built_onnx_fp32, onnx_fp32_path, unmeasured_exact
    from souk.models.registry import model_card

    monkeypatch.setenv("SOUK_CACHE_DIR", str(tmp_path))
    card = model_card(str(tiny_encoder))
    assert built_onnx_fp32(card) is None and unmeasured_exact(str(tiny_encoder)) == "onnx-fp32"  # a BERT: writable
    encoder = get_encoder(EncoderConfig(model=str(tiny_encoder), backend="exact"))
    assert encoder.backend == "onnx-fp32"  # (its export written at load: test_onnx_bert's cold query process)
    reference = get_encoder(EncoderConfig(model=str(tiny_encoder), backend="torch-fp32"))
    assert cosines(encoder.encode(PROBE[:8]), reference.encode(PROBE[:8])).min() > 0.9999
    path = onnx_fp32_path(card)
    path.write_bytes(path.read_bytes()[:-10])  # a damaged export is not taken, and written again
    assert built_onnx_fp32(card) is None and onnx_fp32_path(card) == path and built_onnx_fp32(card) == path
    other = tmp_path / "other"  # an architecture the writer does not know, nothing exported: torch
    shutil.copytree(tiny_encoder, other)
    (other / "config.json").write_text(json.dumps(json.loads((other / "config.json").read_text())
                                                  | {"position_embedding_type": "relative_key"}))
    assert unmeasured_exact(str(other)) == "torch-fp32"


def test_split_rows_balances_the_padded_work_and_drops_each_parts_padding():
    from souk.models.backends import split_rows

    mask = np.zeros((6, 10), dtype=np.int64)
    for row, length in enumerate([3, 10, 5, 2, 8, 4]):
        mask[row, :length] = 1
    ids = np.arange(60).reshape(6, 10)
    parts = split_rows({"input_ids": ids, "attention_mask": mask}, 2)
    assert [list(rows) for rows, _ in parts] == [[1, 4], [2, 5, 0, 3]]  # 2 x 10 and 4 x 5 padded tokens
    assert [p["input_ids"].shape for _, p in parts] == [(2, 10), (4, 5)]
    assert (parts[1][1]["input_ids"] == ids[[2, 5, 0, 3], :5]).all()
    four = split_rows({"input_ids": ids, "attention_mask": mask}, 4)
    assert sorted(r for rows, _ in four for r in rows) == list(range(6))
    assert [list(r) for r, _ in split_rows({"input_ids": ids[:1], "attention_mask": mask[:1]}, 2)] == [[0]]
    unmasked = split_rows({"x": ids}, 2)
    assert [list(r) for r, _ in unmasked] == [[0, 1, 2], [3, 4, 5]] and unmasked[0][1]["x"].shape == (3, 10)


def test_inputs_padded_to_a_multiple_of_columns_give_the_same_vectors(tiny_encoder, tmp_path, monkeypatch):
    """The int8 OpenVINO path pads its inputs to `INT8_WIDTH_MULTIPLE` columns (quicker kernels): masked columns
    change no row's output, through `map` (a corpus) and `__call__` (rows split across the streams)."""
    pytest.importorskip("openvino")
    from souk.models.backends import StreamedModel, onnx_fp32_path, padded_to
    from souk.models.registry import model_card

    mask = np.zeros((3, 5), dtype=np.int64)
    for row, length in enumerate([5, 2, 3]):
        mask[row, :length] = 1
    ids = (np.arange(15).reshape(3, 5) + 100) * mask
    wide = padded_to({"input_ids": ids, "attention_mask": mask, "rows": np.arange(3)}, 8)
    assert wide["input_ids"].shape == (3, 8) and (wide["input_ids"][:, :5] == ids).all()
    assert not wide["attention_mask"][:, 5:].any() and wide["rows"].shape == (3,)
    assert padded_to({"input_ids": ids}, 5)["input_ids"] is ids
    monkeypatch.setenv("SOUK_CACHE_DIR", str(tmp_path))
    path = onnx_fp32_path(model_card(str(tiny_encoder)))
    plain, padded = StreamedModel(path, "f32", threads=2), StreamedModel(path, "f32", threads=2, multiple=8)
    inputs = {"input_ids": ids, "attention_mask": mask}
    assert np.allclose(plain(inputs), padded(inputs), atol=1e-5)
    got: dict = {}
    padded.map([("all", inputs)], got.__setitem__)
    assert np.allclose(got["all"], plain(inputs), atol=1e-5)


def test_onnx_sessions_do_not_spin_after_a_run(tiny_encoder, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    from souk.models.backends import onnx_fp32_path, ort_session
    from souk.models.registry import model_card

    monkeypatch.setenv("SOUK_CACHE_DIR", str(tmp_path))
    session = ort_session(onnx_fp32_path(model_card(str(tiny_encoder))), threads=2)
    assert session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_streamed_openvino_splits_rows_across_streams_and_keeps_their_order(tiny_encoder, tmp_path, monkeypatch):
    pytest.importorskip("openvino")
    from souk.models.backends import StreamedModel, load_tokenizer, onnx_fp32_path, run_batches
    from souk.models.registry import model_card

    monkeypatch.setenv("SOUK_CACHE_DIR", str(tmp_path))
    card = model_card(str(tiny_encoder))
    one, two = StreamedModel(onnx_fp32_path(card), "f32", 1), StreamedModel(onnx_fp32_path(card), "f32", 2)
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 90, size=(5, 7)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[3, 4:] = 0
    inputs = {"input_ids": ids, "attention_mask": mask}
    np.testing.assert_allclose(two(inputs), one(inputs), atol=1e-5)  # 5 rows over 2 streams, in order
    np.testing.assert_allclose(two({k: v[:1] for k, v in inputs.items()}), one(inputs)[:1], atol=1e-5)
    mask[:, 5:] = 0  # mostly padding: each stream's part runs at its own width, rows still in order
    mask[0, 2:] = 0
    np.testing.assert_allclose(two(inputs), one(inputs), atol=1e-5)
    tok = load_tokenizer(str(tiny_encoder), 32)
    forward = BACKENDS["openvino-fp32"].load(card)
    assert hasattr(forward, "map_batches")  # a whole job goes to the streams at once
    streamed = run_batches(forward, tok, PROBE[:20], 4, card.dim)
    alone = np.concatenate([run_batches(forward, tok, [t], 4, card.dim) for t in PROBE[:20]])
    np.testing.assert_allclose(streamed, alone, atol=1e-4)

    def broken(key, out):
        raise ValueError("sink")

    with pytest.raises(ValueError, match="sink"):
        two.map([(0, inputs)], broken)


def test_balanced_batches_give_side_by_side_streams_equal_work():
    from souk.models.backends import balanced_batches

    ranked = np.array([250] * 16 + [200] * 16 + [60] * 16)  # a 48-text probe, longest first
    cuts = balanced_batches(ranked, 32, 4)
    assert cuts[0][0] == 0 and cuts[-1][1] == 48 and all(a[1] == b[0] for a, b in zip(cuts, cuts[1:]))
    padded = [(end - start) * ranked[start] for start, end in cuts]
    assert len(cuts) >= 4 and max(padded) <= ranked.sum() / 4  # equal rows would give one stream 32 x 250
    big = np.full(1000, 100)
    assert balanced_batches(big, 32, 4) == [(s, min(s + 32, 1000)) for s in range(0, 1000, 32)]  # rows cap
    assert balanced_batches(np.array([7]), 32, 4) == [(0, 1)]


def test_int8_export_keeps_the_feed_forward_outputs_fp32(tiny_encoder, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    import onnx

    from souk.models.backends import fp32_matmuls, onnx_fp32_path, onnx_int8_path
    from souk.models.registry import model_card

    monkeypatch.setenv("SOUK_CACHE_DIR", str(tmp_path))
    card = model_card(str(tiny_encoder))
    kept = fp32_matmuls(onnx_fp32_path(card))
    layers = json.loads((tiny_encoder / "config.json").read_text())["num_hidden_layers"]
    assert len(kept) == layers and all("/output/dense/" in n and "/attention/" not in n for n in kept)
    graph = onnx.load(str(onnx_int8_path(card, reduce_range=True))).graph
    assert {n.name for n in graph.node if n.op_type == "MatMul"} >= set(kept)  # still fp32 MatMuls
    assert any(n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") for n in graph.node)  # the rest int8


def test_onnx_streams_give_the_rows_one_session_gives(tiny_encoder, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    from souk.models.backends import OrtStreams, load_tokenizer, onnx_fp32_path, ort_session, run_batches
    from souk.models.registry import model_card

    monkeypatch.setenv("SOUK_CACHE_DIR", str(tmp_path))
    card = model_card(str(tiny_encoder))
    path = onnx_fp32_path(card)
    streams, whole = OrtStreams(path, 2), ort_session(path, 1)
    tok = load_tokenizer(str(tiny_encoder), 64)
    encs = tok.encode_batch(PROBE[:7])
    width = max(len(e.ids) for e in encs)
    ids = np.zeros((7, width), dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, e in enumerate(encs):
        ids[i, :len(e.ids)], mask[i, :len(e.ids)] = e.ids, 1
    ref = whole.run(None, {"input_ids": ids, "attention_mask": mask})[0]
    assert np.allclose(streams(ids, mask), ref, atol=1e-5)  # rows split across two runs, put back in order
    assert np.allclose(streams(ids[:1], mask[:1]), ref[:1], atol=1e-5)
    dim = ref.shape[1]
    one = run_batches(lambda i, m: whole.run(None, {"input_ids": i, "attention_mask": m})[0], tok, PROBE, 8, dim)
    assert np.allclose(run_batches(streams, tok, PROBE, 8, dim), one, atol=1e-5)  # whole batches on the streams
    import threading

    runs_on = []
    run = streams._run
    monkeypatch.setattr(streams, "_run", lambda i, m: runs_on.append(threading.current_thread()) or run(i, m))
    assert np.allclose(run_batches(streams, tok, PROBE[:1], 8, dim), one[:1], atol=1e-5)
    assert runs_on == [threading.current_thread()]  # one batch (a query): no hand-over to a stream's thread
    run_batches(streams, tok, PROBE, 8, dim)
    assert threading.current_thread() not in runs_on[1:]


def test_a_querys_exact_path_is_resolved_once_per_window_and_again_after_a_measurement(tiny_encoder, monkeypatch):
    import souk.models.backends as backends
    import souk.models.encoder as encoder

    reads = []
    monkeypatch.setattr(encoder, "_EXACT", {})
    monkeypatch.setattr(encoder, "cached_choice", lambda config: reads.append(1) or {"exact": "torch-fp32"})
    config = EncoderConfig(model=str(tiny_encoder), backend="exact")
    first = get_encoder(config)
    assert get_encoder(config) is first and first.backend == "torch-fp32" and len(reads) == 1  # no file read per query
    monkeypatch.setattr(backends, "_GENERATION", [backends.choice_generation() + 1])  # this process measured again
    get_encoder(config)
    assert len(reads) == 2
    monkeypatch.setattr(encoder, "RESOLVE_EVERY_S", 0.0)  # the window passed: another process may have measured
    get_encoder(config)
    assert len(reads) == 3
