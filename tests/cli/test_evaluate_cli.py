"""`souk eval` and `souk compare` end to end: the real `souk index`, pipeline and run files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from souk.cli.main import app
from souk.errors import DatasetError
from souk.evaluation.datasets import load_beir
from souk.evaluation.runs import read_run
from support import DATA, REPO, needs_shared, run_souk

FIXTURES = REPO / "tests" / "evaluation" / "fixtures"
EVAL_KEYS = {"ndcg@10", "recall@100", "mrr@10", "map", "judged@10", "queries", "p50_ms", "p99_ms"}

runner = CliRunner()


def souk(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


def last_json(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def tiny_index(tmp_path_factory) -> Path:
    index = tmp_path_factory.mktemp("tiny") / "index"
    last_json(souk("index", FIXTURES / "tiny", "--index", index, "--json"))
    return index


def test_eval_writes_run_report_and_json(tiny_index: Path, tmp_path: Path):
    run, report = tmp_path / "run.trec", tmp_path / "report"
    out = last_json(souk(
        "eval", "--index", tiny_index, "--dataset", FIXTURES / "tiny", "--split", "test",
        "--pipeline", "bm25", "--k", "5", "--run", run, "--report", report,
        "--baseline", FIXTURES / "run_a.trec", "--json",
    ))
    assert EVAL_KEYS <= set(out) and out["queries"] == 5 and out["skipped"] == 1
    assert out["baseline"]["metrics"]["ndcg@10"]["mean_b"] == pytest.approx(out["ndcg@10"])
    assert set(read_run(run)) <= {"q1", "q2", "q3", "q4", "q5"}
    assert all(len(ranked) <= 5 for ranked in read_run(run).values())
    written = {p.name for p in report.iterdir()}
    assert written == {"index.html", "metrics.png", "latency.png", "baseline_diff.png"}


@pytest.mark.slow
def test_eval_served_scores_the_pages_search_shows(tiny_index: Path, tmp_path: Path):
    from souk.engine import Engine

    run = tmp_path / "served.trec"
    out = last_json(souk("eval", "--index", tiny_index, "--dataset", FIXTURES / "tiny", "--split", "test",
                         "--pipeline", "keyword", "--k", "5", "--served", "--run", run, "--json"))
    assert out["served"] is True and EVAL_KEYS <= set(out)
    engine, data = Engine.open(tiny_index), load_beir(FIXTURES / "tiny", "test")
    for qid, ranked in read_run(run).items():  # each query's run is the page `souk search` shows, in its order
        page = engine.search(data.queries[qid], k=5, highlight=False, record=False, suggest_instead=False)
        assert [d for d, _ in sorted(ranked, key=lambda x: -x[1])] == [h.id for h in page.hits]


def test_eval_human_output(tiny_index: Path):
    result = souk("eval", "--index", tiny_index, "--dataset", FIXTURES / "tiny", "--split", "test")
    assert result.exit_code == 0, result.output
    assert "ndcg@10" in result.stdout and "p99_ms" in result.stdout


def test_compare_json_and_human(tmp_path: Path):
    args = ["compare", FIXTURES / "run_a.trec", FIXTURES / "run_b.trec", "--dataset", FIXTURES / "tiny",
            "--split", "test"]
    out = last_json(souk(*args, "--top", "2", "--json"))
    assert (out["wins"], out["ties"], out["losses"]) == (4, 0, 1) and out["skipped"] == 1
    assert set(out["metrics"]["ndcg@10"]) == {"mean_a", "mean_b", "delta", "p_randomization", "p_ttest"}
    first = out["disagreements"][0]
    assert len(out["disagreements"]) == 2 and first["text"] and "top_a" in first and first["judgments"]
    human = souk(*args)
    assert human.exit_code == 0 and "B wins 4, ties 0, loses 1" in human.stdout
    assert "nonstick pan coating" in human.stdout


def test_errors_name_the_problem(tmp_path: Path):
    result = souk("compare", FIXTURES / "run_a.trec", FIXTURES / "run_b.trec", "--dataset", FIXTURES / "tiny",
                  "--split", "dev")
    assert isinstance(result.exception, DatasetError)
    assert "no qrels for split 'dev'; available splits: test" in str(result.exception)
    bad = tmp_path / "bad.trec"
    bad.write_text("q1 Q0 d1 1 1.0 t\nq1 Q0 d2 x\n")
    result = souk("compare", bad, FIXTURES / "run_b.trec", "--dataset", FIXTURES / "tiny")
    assert isinstance(result.exception, DatasetError) and f"{bad}:2:" in str(result.exception)
    result = souk("compare", bad, bad, "--dataset", FIXTURES / "tiny", "--metric", "ndgc@10")
    assert result.exit_code == 2 and "unknown metric 'ndgc@10'" in result.output


def test_console_script_turns_errors_into_one_line():
    proc = run_souk(
        "compare", str(FIXTURES / "run_a.trec"), str(FIXTURES / "run_b.trec"),
        "--dataset", str(FIXTURES / "tiny"), "--split", "dev", check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith("available splits: test")


@pytest.mark.slow
@needs_shared("data")
@pytest.mark.parametrize(("collection", "split"), [("cranfield", "test"), ("scifact", "dev")])
def test_eval_run_file_agrees_with_trec_eval(tmp_path: Path, collection: str, split: str):
    """Acceptance: souk's nDCG@10, Recall@100, MAP for its own run file equal pytrec_eval's (1e-4)."""
    pytrec_eval = pytest.importorskip("pytrec_eval")
    data, index, run = DATA / collection, tmp_path / "index", tmp_path / "run.trec"
    last_json(souk("index", data, "--index", index, "--json"))
    out = last_json(
        souk("eval", "--index", index, "--dataset", data, "--split", split, "--run", run, "--json")
    )
    qrels = load_beir(data, split).qrels
    ref = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100", "map"}).evaluate(
        {qid: dict(ranked) for qid, ranked in read_run(run).items()}
    )
    assert len(ref) == out["queries"] == len(qrels)
    for ours, theirs in (("ndcg@10", "ndcg_cut_10"), ("recall@100", "recall_100"), ("map", "map")):
        assert out[ours] == pytest.approx(np.mean([v[theirs] for v in ref.values()]), abs=1e-4), ours
