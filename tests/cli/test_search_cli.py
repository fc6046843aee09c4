"""`souk search` times loading (index, models, caches) apart from the search: `load_ms` beside `took_ms`."""
import json

import pytest

from support import FIXTURES, run_souk


@pytest.mark.slow
def test_hybrid_search_reports_model_loading_apart_from_took_ms(tmp_path):
    index = tmp_path / "index"
    run_souk("index", str(FIXTURES / "products.jsonl"), "--index", str(index), "--vectors")
    out = json.loads(run_souk("search", "running shoes 跑步鞋", "--index", str(index), "--pipeline", "hybrid",
                              "--json").stdout.strip().splitlines()[-1])
    assert out["hits"] and out["load_ms"] > 0
    assert out["took_ms"] < out["load_ms"], "the encoder's loading is counted in load_ms, not in took_ms"
    human = run_souk("search", "milk", "--index", str(index), "--pipeline", "hybrid").stdout
    assert "loaded in" in human and "hits in" in human


def test_keyword_search_json_has_load_ms(tmp_path):
    from support import run_main

    index = tmp_path / "index"
    run_main("index", str(FIXTURES / "products.jsonl"), "--index", str(index))
    out = json.loads(run_main("search", "蛋糕", "--index", str(index), "--json").stdout.strip().splitlines()[-1])
    assert out["total"] > 0 and out["load_ms"] >= 0 and out["took_ms"] >= 0
