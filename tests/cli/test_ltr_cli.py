"""The learning commands end to end: souk fit --stages ltr, then search and eval through the ltr pipeline;
souk clicks learn, continued on a second log and refusing a log it already learned."""
from __future__ import annotations

import json

import pytest

from ltr_shop import SHOP
from support import run_main


def last_json(proc):
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_fit_then_search_and_eval_the_ltr_pipeline(tmp_path):
    index = str(tmp_path / "index")
    run_main("index", str(SHOP / "corpus.jsonl"), "--index", index, "--schema", str(SHOP / "schema.toml"))
    fitted = last_json(run_main("fit", "--index", index, "--train", str(SHOP), "--split", "train", "--dev-split", "dev",
                                "--stages", "ltr", "--budget-min", "2", "--seed", "5", "--json"))
    [model] = fitted["models"]
    assert model["stage"] == "ltr" and model["model"] == "ltr-1" and model["active"]
    found = last_json(run_main("search", "red drill", "--index", index, "--pipeline", "ltr", "--explain", "-k",
                               "3", "--json"))
    assert list(found["timings_ms"]) == ["recall", "ltr"]
    assert [h["explain"]["ltr"]["rank"] for h in found["hits"]] == [1, 2, 3]
    evaluated = last_json(run_main("eval", "--index", index, "--dataset", str(SHOP), "--split", "dev",
                                   "--pipeline", "ltr", "--json"))
    # the fitter measured what eval measures
    assert evaluated["ndcg@10"] == pytest.approx(model["dev"]["ndcg@10"], abs=1e-4)
    assert evaluated["p50_ms"] > 0


@pytest.mark.slow
def test_clicks_learn_continues_and_refuses_a_log_twice(tmp_path):
    index = str(tmp_path / "index")
    run_main("index", str(SHOP / "corpus.jsonl"), "--index", index, "--schema", str(SHOP / "schema.toml"))
    logs = []
    for n in range(2):
        log = tmp_path / f"day{n}.jsonl"
        log.write_text("\n".join(json.dumps({"request": f"r{n}-{i}", "query": "red drill",
                                             "shown": ["p002", "p001", "p000"],
                                             "clicked": ["p000"], "ts": "2025-01-0%dT12:00:00Z" % (n + 1)})
                                 for i in range(20)) + "\n")
        logs.append(log)
    first = last_json(run_main("clicks", "learn", "--index", index, "--log", str(logs[0]), "--json"))
    assert first["model"] == "clicks-1" and first["continued_from"] is None and first["clicks"] == 20
    second = last_json(run_main("clicks", "learn", "--index", index, "--log", str(logs[1]), "--json"))
    assert (
        second["model"] == "clicks-2" and second["continued_from"] == "clicks-1" and second["total_impressions"] == 40
    )
    again = run_main("clicks", "learn", "--index", index, "--log", str(logs[1]), check=False)
    assert again.returncode == 2 and "already learned by clicks-2" in again.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "x", "shown": ["p001"], "clicked": ["p009"]}\n')
    refused = run_main("clicks", "learn", "--index", index, "--log", str(bad), check=False)
    assert refused.returncode == 2 and "bad.jsonl:1" in refused.stderr and "not shown" in refused.stderr
