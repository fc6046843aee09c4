"""`souk bench serve`: a real server under concurrent clients reports latency and the stages' timings."""
from __future__ import annotations

import pytest

from souk.bench.serve import bench_serve


@pytest.mark.slow
def test_bench_serve_reports_the_stage_timings_of_the_responses(product_index):
    out = bench_serve(product_index, clients=2, seconds=1.0, pipeline="keyword")
    assert out["errors"] == 0 and out["requests"] > 0
    assert set(out["stage_p50_ms"]) == {"recall"}
    assert 0 <= out["stage_p50_ms"]["recall"] <= out["p50_ms"]
