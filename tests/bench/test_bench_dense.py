import json

import pytest

from souk.index.vectors import INDEX_TYPES
from souk.models import BACKENDS
from support import DATA, needs_shared, run_souk

pytestmark = [needs_shared("data", "scifact"), pytest.mark.slow]
SCIFACT = str(DATA / "scifact")


def last_json(proc) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_bench_encoder_json():
    out = last_json(run_souk("bench", "encoder", "--dataset", SCIFACT, "--split", "dev", "--max-docs", "200", "--json"))
    assert {"docs_per_s", "peer_docs_per_s", "ratio", "ndcg_delta", "path"} <= set(out)
    assert list(out)[-5:] == ["docs_per_s", "peer_docs_per_s", "ratio", "ndcg_delta", "path"]
    assert out["path"] in BACKENDS and out["docs"] == 200 and out["docs_per_s"] > 0 and out["peer_docs_per_s"] > 0
    assert abs(out["ndcg_delta"]) <= 0.03 and out["peer_ndcg@10"] > 0.5


def test_bench_encoder_capped_to_avx2_reruns_itself_in_a_capped_process():
    out = last_json(run_souk("bench", "encoder", "--dataset", SCIFACT, "--split", "dev", "--max-docs", "150", "--isa",
                             "avx2", "--json"))
    cap = out["cap"]
    assert out["isa"] == "avx2" and cap["env"]["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert cap["env"]["MKL_ENABLE_INSTRUCTIONS"] == "AVX2" and out["uncapped"] == cap["uncapped"]
    assert list(out)[-5:] == ["docs_per_s", "peer_docs_per_s", "ratio", "ndcg_delta", "path"]
    assert not any(n in out["path"] for n in ("bf16", "openvino-int8"))  # what an AVX2-only CPU runs
    if cap["cpuid_mask"]:  # every library capped: ONNX Runtime measured too
        assert cap["how"] == "cpuid" and "docs_per_s" in out["probe"]["onnx-fp32"]
    else:  # the variables alone: ONNX Runtime left out, and the run says what ran uncapped
        assert "skipped" in out["probe"]["onnx-fp32"] and any("onnxruntime" in u for u in out["uncapped"])
    assert abs(out["ndcg_delta"]) <= 0.03


def test_bench_ann_json_and_table():
    out = last_json(run_souk("bench", "ann", "--dataset", SCIFACT, "--split", "dev", "--max-docs", "300", "--json"))
    rows = {r["index"]: r for r in out["rows"]}
    assert set(rows) == set(INDEX_TYPES) and out["docs"] == 300
    assert rows["flat"]["recall@10"] == 1.0
    assert all(r["qps"] > 0 and r["memory_mb"] > 0 for r in rows.values())
    assert rows["sq8"]["memory_mb"] < rows["flat"]["memory_mb"] / 3
    table = run_souk("bench", "ann", "--dataset", SCIFACT, "--split", "dev", "--max-docs", "300", "--index",
                     "flat").stdout
    assert "recall@10" in table and "flat" in table
