"""`souk bench encoder` (native and capped to AVX2) and `souk bench ann` on SciFact dev: their JSON contracts."""
import io

import pytest

from souk.index.vectors import INDEX_TYPES
from souk.models import BACKENDS
from souk.models.machine import detect_machine
from support import DATA, Prebuild, needs_shared

pytestmark = [needs_shared("data", "scifact"), pytest.mark.slow]
SCIFACT = str(DATA / "scifact")
ENCODER = ("bench", "encoder", "--dataset", SCIFACT, "--split", "dev", "--json")
ANN = ("bench", "ann", "--dataset", SCIFACT, "--split", "dev", "--max-docs", "300")
# minutes of encoding on 2 cores: started when the session begins, on idle core time (`support.Prebuild`); only
# the outputs' contracts are asserted, so the load of the tests beside them does not matter
BEYOND_AVX2 = bool(detect_machine().flags - {"avx2"})  # else the AVX2-capped run is the native run (same code)
PREBUILD = {**({"bench-encoder": (*ENCODER, "--max-docs", "200")} if BEYOND_AVX2 else {}),
            "bench-encoder-avx2": (*ENCODER, "--max-docs", "150", "--isa", "avx2"),
            "bench-ann": (*ANN, "--json")} \
    if (DATA / "scifact").is_dir() else {}


@pytest.mark.skipif(not BEYOND_AVX2, reason="an AVX2-only CPU: the capped test's child runs this very bench")
@pytest.mark.prebuild("bench-encoder")
def test_bench_encoder_json():
    out = Prebuild.last_json("bench-encoder")
    assert {"docs_per_s", "peer_docs_per_s", "ratio", "ndcg_delta", "path"} <= set(out)
    assert list(out)[-5:] == ["docs_per_s", "peer_docs_per_s", "ratio", "ndcg_delta", "path"]
    assert out["path"] in BACKENDS and out["docs"] == 200 and out["docs_per_s"] > 0 and out["peer_docs_per_s"] > 0
    assert abs(out["ndcg_delta"]) <= 0.03 and out["peer_ndcg@10"] > 0.5


@pytest.mark.prebuild("bench-encoder-avx2")
def test_bench_encoder_capped_to_avx2_reruns_itself_in_a_capped_process():
    out = Prebuild.last_json("bench-encoder-avx2")
    cap = out["cap"]
    assert out["isa"] == "avx2" and cap["env"]["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert cap["env"]["MKL_ENABLE_INSTRUCTIONS"] == "AVX2" and out["uncapped"] == cap["uncapped"]
    assert list(out)[-5:] == ["docs_per_s", "peer_docs_per_s", "ratio", "ndcg_delta", "path"]
    assert not any(n in out["path"] for n in ("bf16", "openvino-int8"))  # what an AVX2-only CPU runs
    assert out["path"] in BACKENDS and out["docs"] == 150 and out["docs_per_s"] > 0 and out["peer_docs_per_s"] > 0
    assert out["peer_ndcg@10"] > 0.5
    if cap["cpuid_mask"]:  # every library capped: ONNX Runtime measured too
        assert cap["how"] == "cpuid" and "docs_per_s" in out["probe"]["onnx-fp32"]
    else:  # the variables alone: ONNX Runtime left out, and the run says what ran uncapped
        assert "skipped" in out["probe"]["onnx-fp32"] and any("onnxruntime" in u for u in out["uncapped"])
    assert abs(out["ndcg_delta"]) <= 0.03


@pytest.mark.prebuild("bench-ann")
def test_bench_ann_json_and_table():
    out = Prebuild.last_json("bench-ann")
    rows = {r["index"]: r for r in out["rows"]}
    assert set(rows) == set(INDEX_TYPES) and out["docs"] == 300
    assert rows["flat"]["recall@10"] == 1.0
    assert all(r["qps"] > 0 and r["memory_mb"] > 0 for r in rows.values())
    assert rows["sq8"]["memory_mb"] < rows["flat"]["memory_mb"] / 3
    # the table the command prints without --json, from these rows (not a second run: it encodes SciFact again)
    from rich.console import Console

    from souk.cli.bench_dense import ann_table

    console = Console(width=200, record=True, file=io.StringIO())
    console.print(ann_table(out))
    table = console.export_text()
    assert "recall@10" in table and "300 docs" in table and all(t in table for t in INDEX_TYPES)
