"""`souk bench rerank` on the tiny fitted index: both sides score the same candidates alike."""
from __future__ import annotations

import pytest

from souk.bench.rerank import bench_rerank
from souk.models.store import ModelStore


@pytest.mark.slow
def test_bench_rerank_reports_speed_and_agreement(tiny_cross):
    ModelStore(tiny_cross["index"]).activate(tiny_cross["outcome"].model)
    result = bench_rerank(tiny_cross["collection"], "dev", index=tiny_cross["index"], max_queries=12, progress=False)
    assert {"pairs_per_s", "peer_pairs_per_s", "ratio", "p50_ms_top20", "ndcg_delta"} <= set(result)
    assert result["queries"] == 12 and result["pairs"] > 12 and result["pairs_per_s"] > 0
    assert abs(result["ndcg_delta"]) <= 0.05 and result["model"].endswith(tiny_cross["outcome"].model)
