"""`souk ner train / eval / tag / gazetteer` end to end on the hand-made fixture (tiny, fast)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from souk.cli.main import app
from souk.errors import DatasetError, ModelError
from support import FIXTURES, run_souk

pytest.importorskip("torch")
runner = CliRunner()
MINI = FIXTURES / "ner-mini.jsonl"


def souk(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


def last_json(result) -> dict:
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    import torch

    before = torch.get_num_threads()
    out = tmp_path_factory.mktemp("ner") / "tagger"
    summary = last_json(souk("ner", "train", "--data", MINI, "--dev", MINI, "--out", out, "--epochs", "2",
                             "--seed", "3", "--threads", "1", "--members", "2", "--json"))
    torch.set_num_threads(before)
    assert (
        summary["model"] == str(out)
        and summary["epochs_run"] == 4
        and summary["members"] == 2
        and 0.0 <= summary["dev"]["f1"] <= 1.0
    )
    return out


@pytest.mark.slow
def test_eval_prints_entity_scores_as_json(model):
    scores = last_json(souk("ner", "eval", "--model", model, "--data", MINI, "--json"))
    assert list(scores) == ["f1", "precision", "recall", "per_type"]
    assert set(scores["per_type"]) <= {"HPPX", "HCCX", "XH"}
    for s in scores["per_type"].values():
        assert set(s) == {"precision", "recall", "f1", "support"}
    assert sum(s["support"] for s in scores["per_type"].values()) == 29
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["dev"]["f1"] == pytest.approx(scores["f1"])  # the kept epoch is the one written


def test_tag_with_model_and_gazetteer(model, product_index, tmp_path):
    aliases = tmp_path / "aliases.json"
    aliases.write_text(json.dumps({"嘉顿": "Garden"}, ensure_ascii=False), encoding="utf-8")
    gazetteer = tmp_path / "gazetteer.json"
    built = last_json(souk("ner", "gazetteer", "--index", product_index, "--field", "brand", "--field", "category",
                           "--aliases", aliases, "--out", gazetteer, "--json"))
    assert built["types"] == ["brand", "category"] and built["entries"] > 10
    tagged = last_json(souk("ner", "tag", "嘉頓 蛋糕", "--gazetteer", gazetteer, "--model", model, "--json"))
    assert tagged["text"] == "嘉頓 蛋糕"
    assert {"type": "brand", "start": 0, "end": 2, "value": "Garden", "text": "嘉頓", "source": "gazetteer",
            "score": 1.0} in tagged["entities"]
    assert all(set(e) == {"type", "start", "end", "value", "text", "source", "score"} for e in tagged["entities"])


def test_bad_input_is_a_clear_error(model, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"chars": ["a"], "tags": ["O"]}\n{"chars": ["a", "b"], "tags": ["O"]}\n')
    result = souk("ner", "eval", "--model", model, "--data", bad)
    assert isinstance(result.exception, DatasetError) and f"{bad}:2" in str(result.exception)
    result = souk("ner", "eval", "--model", tmp_path, "--data", MINI)
    assert isinstance(result.exception, ModelError)


def test_console_error_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"chars": ["a"], "tags": ["E-X"]}\n')
    proc = run_souk("ner", "train", "--data", str(bad), "--dev", str(MINI), "--out", str(tmp_path / "m"), check=False)
    assert proc.returncode == 2 and f"error: {bad}:1: tag 'E-X' is not BIO" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "m").exists()
