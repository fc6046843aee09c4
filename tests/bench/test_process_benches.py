"""`souk bench index` and `souk bench cli` on tiny inputs: one JSON object with the ratio and what it is made of."""
import json

import pytest

from support import FIXTURES, run_souk


@pytest.mark.slow
def test_bench_index_json_on_fixture():
    out = json.loads(run_souk("bench", "index", "--dataset", str(FIXTURES / "beir-mini"), "--repeat", "2",
                              "--json").stdout.splitlines()[-1])
    assert out["docs"] == 8 and len(out["souk_runs_s"]) == len(out["peer_runs_s"]) == 2
    assert out["ratio"] > 0 and out["docs_per_s"] > 0 and out["peer_docs_per_s"] > 0
    assert out["same_tokens"] is True and len(out["souk_cpu_s"]) == 2 and out["cpu_ratio"] > 0
    assert out["batches_to_workers"] == 0  # 8 documents: no worker is started
    assert len(out["souk_impacts_cpu_s"]) == 2 and 0 < out["cpu_ratio_with_impacts"] < out["cpu_ratio"]


@pytest.mark.slow
def test_bench_cli_times_whole_processes_and_sees_no_heavy_module(tmp_path):
    index = tmp_path / "ix"
    run_souk("index", str(FIXTURES / "beir-mini"), "--index", str(index))
    out = json.loads(run_souk("bench", "cli", "--index", str(index), "--query", "solar", "--runs", "1",
                              "--json").stdout.splitlines()[-1])
    assert out["language"] == "english" and out["heavy_modules"] == []
    # from unrounded times
    assert out["souk_s"] > out["peer_s"] > 0 and abs(out["ratio"] - out["peer_s"] / out["souk_s"]) < 0.01
    assert out["took_ms"] is not None
