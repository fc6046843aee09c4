"""The traffic loop end to end on the tool shop: a real server, simulated shoppers over HTTP, analytics, export,
`souk fit --events --stages ltr`, `souk eval --pipeline ltr`, `souk clicks learn --events`, and an interleaved
experiment reported by `souk experiments --json`. The commands run in this process (`run_main`: no interpreter
start-up each), the server in its own."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from ltr_shop import SHOP
from support import REPO, free_port, run_main, sign_test_p


def last_json(proc):
    return json.loads(proc.stdout.strip().splitlines()[-1])


def serve(index, *extra):
    port = free_port()
    env = {**os.environ, "SOUK_ADMIN_KEY": "", "SOUK_SEARCH_KEY": ""}
    proc = subprocess.Popen([sys.executable, "-m", "souk", "serve", "--index", index, "--port", str(port), *extra],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            if proc.poll() is not None:
                raise AssertionError(proc.stderr.read().decode())
            time.sleep(0.1)
    raise AssertionError("server did not start")


@pytest.mark.slow
def test_simulated_traffic_fits_ltr_and_an_interleaved_experiment_is_reported(tmp_path):
    index = str(tmp_path / "index")
    run_main("index", str(SHOP / "corpus.jsonl"), "--index", index, "--schema", str(SHOP / "schema.toml"))
    proc, url = serve(index)
    try:
        sim = last_json(run_main("simulate", "--dataset", str(SHOP), "--split", "train", "--searches", "300",
                                 "--url", url, "--seed", "3", "--json"))
    finally:
        proc.terminate()
        proc.wait(10)
    assert sim["searches"] == 300 and sim["clicks"] == sim["accepted"] > 50

    stats = last_json(run_main("analytics", "--index", index, "--json"))
    assert stats["searches"] == 300 and stats["actions"]["click"] == sim["clicks"]
    ctr = [p["ctr"] for p in stats["by_position"]]
    assert ctr[0] > ctr[-1]  # shoppers examine the top more
    assert stats["by_pipeline"][0]["pipeline"] == "keyword" and 0 < stats["by_pipeline"][0]["mrr"] <= 1

    exported = run_main("events", "export", "--index", index, "--format", "jsonl").stdout.splitlines()
    assert len(exported) == 300 + sim["clicks"] and json.loads(exported[0])["kind"] == "search"
    parquet = run_main("events", "export", "--index", index, "--format", "parquet", "--out",
                       str(tmp_path / "e.parquet"), check=False)
    if importlib.util.find_spec("pyarrow") is None:
        assert parquet.returncode == 2 and "pyarrow" in parquet.stderr
    else:
        assert parquet.returncode == 0
    assert run_main("events", "export", "--index", index, "--since", "1d", "--format", "csv",
                    check=False).returncode == 2

    fitted = last_json(run_main("fit", "--index", index, "--events", "--stages", "ltr", "--budget-min", "1", "--json"))
    assert fitted["events"]["searches"] == 300 and fitted["events"]["queries"] >= 10
    assert fitted["events"]["theta"][0] == 1.0 and fitted["events"]["theta"][4] < 1.0
    assert fitted["events"]["grading"] == "posterior"
    [model] = fitted["models"]
    assert model["stage"] == "ltr" and model["model"] == "ltr-1" and model["active"]
    ltr = last_json(run_main("eval", "--index", index, "--dataset", str(SHOP), "--split", "dev", "--pipeline",
                             "ltr", "--json"))
    assert ltr["ndcg@10"] > 0

    learned = last_json(run_main("clicks", "learn", "--index", index, "--events", "--json"))
    assert learned["model"] == "clicks-1" and learned["impressions"] == 300
    again = run_main("clicks", "learn", "--index", index, "--events", check=False)
    assert again.returncode == 2 and "since the clicks model last learned" in again.stderr
    refit = last_json(run_main("fit", "--index", index, "--events", "--stages", "ltr", "--budget-min", "1", "--json"))
    manifest = json.loads((tmp_path / "index" / "models" / refit["models"][0]["model"] / "manifest.json").read_text())
    assert "clicks" not in manifest["features"]["groups"]  # the click model learnt from the labels' own clicks
    run_main("models", "--index", index, "--activate", "ltr-1")

    proc, url = serve(index, "--interleave", "keyword,ltr")
    try:
        run_main("simulate", "--dataset", str(SHOP), "--split", "dev", "--searches", "60", "--url", url, "--seed", "4")
        named = json.loads(urllib.request.urlopen(f"{url}/search?q=drill&pipeline=ltr").read())
        assert named["pipeline"] == "ltr"
        split = last_json(run_main("simulate", "--dataset", str(SHOP), "--split", "dev", "--searches", "40",
                                   "--url", url, "--seed", "5", "--ab", "keyword,ltr", "--json"))["ab"]
        arms = split["arms"]
        assert arms["keyword"]["searches"] + arms["ltr"]["searches"] == 40
        assert min(a["searches"] for a in arms.values()) > 0
        assert all(0 <= a["expected_ctr"] <= 1 for a in arms.values())
        assert split["searches_needed"] is None or split["searches_needed"] > 0
    finally:
        proc.terminate()
        proc.wait(10)
    report = last_json(run_main("experiments", "--index", index, "--json", "--ab", "keyword,ltr"))
    assert report["ab"]["searches_a"] + report["ab"]["searches_b"] >= 41  # the split and the named search
    assert report["ab"]["searches_b"] > 0
    assert report["searches"] == 60 and report["a"] == "keyword" and report["b"] == "ltr"
    assert report["wins_a"] + report["wins_b"] + report["ties"] == 60
    p = sign_test_p(report["wins_a"], report["wins_b"])
    assert report["p_value"] == pytest.approx(p, abs=1e-6)
    assert report["winner"] == (("a" if report["wins_a"] > report["wins_b"] else "b") if p < 0.05 else None)


@pytest.mark.slow
def test_fit_needs_judgments_or_events_and_serve_refuses_a_bad_experiment(tmp_path):
    index = str(tmp_path / "index")
    run_main("index", str(SHOP / "corpus.jsonl"), "--index", index, "--schema", str(SHOP / "schema.toml"))
    nothing = run_main("fit", "--index", index, "--stages", "ltr", check=False)
    assert nothing.returncode == 2 and "--events" in nothing.stderr
    empty = run_main("fit", "--index", index, "--events", "--stages", "ltr", check=False)
    assert empty.returncode == 2 and "collect more traffic" in empty.stderr
    grades = run_main("fit", "--index", index, "--events", "--click-grades", "ctr", "--stages", "ltr", check=False)
    assert grades.returncode == 2 and "posterior" in grades.stderr
    for spec, words in (("keyword", "two pipelines"), ("keyword,keyword", "two different")):
        bad = run_main("serve", "--index", index, "--interleave", spec, check=False)
        assert bad.returncode == 2 and words in bad.stderr
    assert last_json(run_main("experiments", "--index", index, "--json"))["winner"] is None
