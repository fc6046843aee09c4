import json

import numpy as np
import pytest

from souk.bench.keyword import _median_ratio
from support import FIXTURES, needs_shared, DATA, run_souk

KEYS = {"qps", "peer_qps", "ratio", "ndcg_delta", "index_docs_per_s", "peer_index_docs_per_s", "ndcg@10",
        "peer_ndcg@10", "rss_mb", "cpu_ratio", "ratio_median", "cpu_ratio_median", "load_avg_1m"}


@pytest.mark.slow
def test_bench_keyword_json_on_fixture():
    out = json.loads(run_souk("bench", "keyword", "--dataset", str(FIXTURES / "beir-mini"),
                              "--json").stdout.splitlines()[-1])
    assert KEYS <= set(out)
    assert out["queries"] == 4  # q5 has no relevant judgment and is skipped
    assert out["cpu_ratio"] > 0
    assert abs(out["ndcg@10"] - out["peer_ndcg@10"]) < 0.05
    assert out["ndcg_delta"] == round(out["ndcg@10"] - out["peer_ndcg@10"], 4)


@pytest.mark.slow
@needs_shared("data", "cranfield")
def test_bench_keyword_matches_peer_quality_on_cranfield():
    out = json.loads(run_souk("bench", "keyword", "--dataset", str(DATA / "cranfield"),
                              "--json").stdout.splitlines()[-1])
    assert abs(out["ndcg@10"] - out["peer_ndcg@10"]) <= 0.01
    assert out["ndcg@10"] > 0.3


def test_median_ratio_counts_each_query_at_its_median_over_the_repeats():
    souk = np.ones((3, 2))
    peer = np.array([[2.0, 2.0], [2.0, 2.0], [200.0, 2.0]])  # one repeat of the first query stretched by the load
    assert _median_ratio(peer, souk) == 2.0
    assert peer.sum() / souk.sum() == 35.0  # what the summed ratio makes of it
