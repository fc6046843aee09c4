"""`souk intent train | eval | predict` end to end through the real CLI (char n-gram models: seconds)."""
from __future__ import annotations

import json
import shutil

import pytest

from support import FIXTURES, run_main

TSV = str(FIXTURES / "intents.tsv")


def last_json(proc) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("intent") / "model"
    proc = run_main("intent", "train", "--data", TSV, "--dev", TSV, "--out", str(out), "--features", "char", "--json")
    result = last_json(proc)
    assert result["model"] == str(out) and result["classes"] in (4, 5) and 0 < result["threshold"] < 1
    assert set(result["dev"]) >= {"accuracy", "in_scope_accuracy", "oos_recall", "macro_f1"}
    return out


@pytest.mark.slow
def test_train_eval_predict(model_dir):
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["kind"] == "intent-classifier" and manifest["dev"]["queries"] == 46
    scores = last_json(run_main("intent", "eval", "--model", str(model_dir), "--data", TSV, "--json"))
    assert {k: scores[k] for k in ("accuracy", "in_scope_accuracy", "oos_recall", "macro_f1")} == \
        {k: manifest["dev"][k] for k in ("accuracy", "in_scope_accuracy", "oos_recall", "macro_f1")}
    assert scores["in_scope_accuracy"] > 0.9
    out = last_json(run_main("intent", "predict", "--model", str(model_dir), "set an alarm for 6 am",
                             "明天下雨吗", "--json"))
    assert [p["label"] for p in out["predictions"]] == ["alarm", "weather"]
    assert out["predictions"][0]["query"] == "set an alarm for 6 am" and len(out["predictions"][0]["top"]) == 3
    human = run_main("intent", "predict", "--model", str(model_dir), "set an alarm for 6 am")
    assert human.stdout.startswith("set an alarm for 6 am -> alarm (")


@pytest.mark.parametrize("args, message", [
    (["intent", "train", "--data", "BAD", "--out", "OUT"], "bad.tsv:3: expected text<TAB>intent, found 0 tabs"),
    (["intent", "train", "--data", "ONE", "--out", "OUT"], "needs at least 2 labels other than 'oos', found 1: alarm"),
    (["intent", "train", "--data", TSV], "--data needs --out DIR"),
    (["intent", "train", "--data", TSV, "--out", "OUT", "--features", "char,bow"], "unknown block 'bow'"),
    (["intent", "eval", "--model", "NOWHERE", "--data", TSV], "no such model directory"),
])
def test_user_errors_are_one_line(tmp_path, args, message):
    (tmp_path / "bad.tsv").write_text("text\tintent\nok\talarm\nmissing the tab\n", encoding="utf-8")
    (tmp_path / "one.tsv").write_text("wake me\talarm\nset alarm\talarm\nhello\toos\n", encoding="utf-8")
    paths = {"BAD": tmp_path / "bad.tsv", "ONE": tmp_path / "one.tsv", "OUT": tmp_path / "out",
             "NOWHERE": tmp_path / "none"}
    proc = run_main(*[str(paths.get(a, a)) for a in args], check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_catalog_categories_into_the_index_model_store(demo_index, tmp_path):
    index = tmp_path / "index"
    shutil.copytree(demo_index, index)
    missing = run_main("intent", "train", "--index", str(index), "--label-field", "colour", check=False)
    assert missing.returncode == 2 and "no keyword/text/stored field 'colour'" in missing.stderr
    result = last_json(run_main("intent", "train", "--index", str(index), "--label-field", "category",
                                "--features", "char", "--folds", "2", "--json"))
    assert result["model"] == str(index / "models" / "intent-1") and result["classes"] == 10
    # no oos examples in a catalog
    assert 0 < result["threshold"] < 1 and result["cv"]["oos_from"] == "held-out classes"
    out = last_json(run_main("intent", "predict", "--model", str(index), "shampoo", "洗发水",
                             "iphone charger", "--json"))
    assert [p["label"] for p in out["predictions"]] == ["Personal care", "Personal care", "oos"]
    listed = last_json(run_main("models", "--index", str(index), "--json"))["models"]
    assert [(m["name"], m["kind"], m["active"]) for m in listed] == [("intent-1", "intent-classifier", True)]
