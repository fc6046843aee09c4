"""`souk spell` and `souk bench spell` end to end: the real `souk index`, JSON last lines, errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from souk.cli.main import app
from support import FIXTURES, run_souk

QUERIES = {"q1": "samsng fridge", "q2": "choclate", "q3": "peanut buter", "q4": "sunglases", "q5": "samsung fridge"}
QRELS = {"q1": ["S1", "S2", "S3"], "q2": ["C1", "C2", "C3", "C4"], "q3": ["P1", "P2", "P3"],
         "q4": ["G1", "G2", "G3"], "q5": ["S1", "S2", "S3"]}


def souk(*args: str | Path):
    """The CLI in this process (fast); errors go through `run_souk` to see the real exit path."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def last_json(result) -> dict:
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spell-cli") / "index"
    run_souk("index", str(FIXTURES / "spell_products.jsonl"), "--index", str(path))
    return path


@pytest.fixture(scope="module")
def beir(tmp_path_factory) -> Path:
    """The spell fixture as a BEIR set whose queries carry shopper typos."""
    root = tmp_path_factory.mktemp("spell-beir")
    lines = (FIXTURES / "spell_products.jsonl").read_text(encoding="utf-8").splitlines()
    products = [json.loads(line) for line in lines]
    (root / "corpus.jsonl").write_text("".join(
        json.dumps({"_id": p["sku"], "title": p["title"], "text": p["title_zh"]}, ensure_ascii=False) + "\n"
        for p in products), encoding="utf-8")
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in QUERIES.items()))
    (root / "qrels").mkdir()
    rows = [f"{q}\t{d}\t1" for q, docs in QRELS.items() for d in docs]
    (root / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(rows) + "\n")
    return root


def test_spell_json(index: Path):
    out = last_json(souk("spell", "--index", str(index), "samsng fridge", "--json"))
    assert {"query", "corrected", "changed", "candidates"} <= set(out)
    assert out["corrected"] == "samsung fridge" and out["changed"] is True
    assert out["candidates"][0][0] == "samsung fridge"
    assert out["hits"] == {"query": 0, "corrected": 3} and out["decision"] == "rewrite"
    assert out["edits"] == [{"original": "samsng", "replacement": "samsung", "kind": "spelling", "start": 0, "end": 6}]


def test_spell_leaves_correct_queries_and_reads_a_log(index: Path, tmp_path: Path):
    out = last_json(souk("spell", "--index", str(index), "dewalt 20v drill", "--json"))
    assert out["changed"] is False and out["corrected"] == "dewalt 20v drill" and out["decision"] == "none"
    log = tmp_path / "log.txt"
    log.write_text("almond latte\n" * 5, encoding="utf-8")
    assert last_json(souk("spell", "--index", str(index), "almond milk", "--json"))["corrected"] == "almondmilk"
    logged = last_json(souk("spell", "--index", str(index), "almond milk", "--log", str(log), "--json"))
    assert logged["changed"] is False  # the log vouches for "almond"
    human = souk("spell", "--index", str(index), "平果手机")
    assert "苹果手机" in human.stdout


def test_spell_errors_are_one_line(tmp_path: Path, index: Path):
    proc = run_souk("spell", "--index", str(tmp_path / "nowhere"), "x", check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    proc = run_souk("spell", "--index", str(index), "x", "--log", str(tmp_path / "none.txt"), check=False)
    assert proc.returncode == 2 and "query log" in proc.stderr


def test_bench_spell(beir: Path):
    out = last_json(souk("bench", "spell", "--dataset", str(beir), "--split", "dev", "--json"))
    assert out["queries"] == 5 and out["changed"] == 4 and out["decisions"]["rewrite"] == 4
    assert out["changed_after"] > out["changed_before"] and out["all_after"] > out["all_before"]
    assert out["wins"] >= 3 and out["losses"] == 0
    proc = run_souk("bench", "spell", "--dataset", str(beir), "--set", "nope=1", check=False)
    assert proc.returncode == 2 and "nope" in proc.stderr
