"""The fit report's ablation (`souk.training.ablation`) with a fake fitter whose idea changes a real pipeline."""

import json

import pytest

from souk.errors import ConfigError
from souk.evaluation.datasets import Dataset
from souk.training.ablation import IDEAS, Idea, ablate, known_ideas, write_report
from souk.training.fit import FITTERS, FitterEntry

SEEN: list[tuple[bool, set]] = []
QUERIES = {f"q{i}": t for i, t in enumerate(["iphone case", "screen protector", "cup noodles", "lemon biscuits",
                                              "cherry cake", "garden cake", "samsung galaxy", "seafood noodles",
                                              "clear silicone case", "biscuits 200g"])}
QRELS = {"q0": {"A1": 1}, "q1": {"A2": 1}, "q2": {"A5": 1}, "q3": {"A4": 1}, "q4": {"A3": 1}, "q5": {"A3": 1},
         "q6": {"A2": 1}, "q7": {"A5": 1}, "q8": {"A1": 1}, "q9": {"A4": 1}}
DATA = Dataset(QUERIES, QRELS, 0, "tiny", "train")


def _fake(job):
    SEEN.append((job.options["boost"], set(job.train.queries)))
    return {"kind": "fake", "dev": {}}


@pytest.fixture(autouse=True)
def fake():
    SEEN.clear()
    with FITTERS.override("fake", FitterEntry(_fake, options={"boost": False, "other": 1})), \
            IDEAS.override("fake.boost", Idea("fake", "boost", "a test idea")):
        yield


@pytest.mark.slow
def test_each_idea_is_fitted_on_and_off_on_copies_without_the_held_out_queries(product_index, tmp_path):
    before = sorted(p.name for p in product_index.rglob("*"))
    report = ablate(product_index, DATA, DATA, ["fake.boost"], tmp_path / "rep", budget_s=30, stages=["fake"],
                    options={"fake": {"other": 2}}, pipelines=("bm25",))
    assert [arm for arm, _ in SEEN] == [True, False]
    held = report["held_out_train_queries"]
    assert held == 2 and all(len(qids) == len(QUERIES) - held for _, qids in SEEN)
    assert SEEN[0][1] == SEEN[1][1]  # the same fixed slice for both arms
    rows = report["rows"]
    assert [(r["idea"], r["arm"]) for r in rows] == [("fake.boost", "on"), ("fake.boost", "off")]
    assert all(0 <= r["held_out_train"]["bm25"] <= 1 and "bm25" in r["dev"] and r["seconds"] >= 0 for r in rows)
    assert report["verdicts"]["fake.boost"]["on_by_default"] is False  # equal arms: no gain
    saved = json.loads((tmp_path / "rep" / "ablation.json").read_text())
    assert saved["rows"] == rows
    md = (tmp_path / "rep" / "ablation.md").read_text()
    assert "| fake.boost | fake | on |" in md and "| dense.prf | dense |" in md
    assert sorted(p.name for p in product_index.rglob("*")) == before  # the index itself was not fitted
    assert [p.name for p in (tmp_path / "rep").iterdir() if p.name.startswith("ablation-")] == []


def test_unknown_or_undeclared_ideas_are_refused(product_index, tmp_path):
    with pytest.raises(ConfigError, match="unknown idea 'fake.nope'; known ideas: .*dense.prf"):
        ablate(product_index, DATA, None, ["fake.nope"], tmp_path, budget_s=30)
    with IDEAS.override("fake.gone", Idea("fake", "gone", "not declared")):
        with pytest.raises(ConfigError, match="has no option 'gone'"):
            ablate(product_index, DATA, None, ["fake.gone"], tmp_path, budget_s=30)
    with pytest.raises(ConfigError, match="not among --stages ltr"):
        ablate(product_index, DATA, None, ["fake.boost"], tmp_path, budget_s=30, stages=["ltr"])


def test_the_report_lists_the_known_ideas_with_their_defaults(tmp_path):
    ideas = {i["idea"]: i for i in known_ideas()}
    assert ideas["dense.prf"]["default"] is True and ideas["fusion.stacking"]["stage"] == "fusion"
    assert ideas["fake.boost"]["default"] is False
    write_report({"train": "tiny/train", "index": "ix", "ideas": known_ideas(),
                  "models": [{"stage": "ltr", "model": "ltr-1", "active": True, "dev": {"ndcg@10": 0.5}}]}, tmp_path)
    md = (tmp_path / "ablation.md").read_text()
    assert "| fusion.stacking | fusion | false |" in md and "| ltr | ltr-1 | True |" in md


def test_an_idea_with_values_fits_its_on_and_off_values(product_index, tmp_path, monkeypatch):
    given = []
    monkeypatch.setattr("souk.training.ablation.fit", lambda path, *a, options=None, **k: given.append(options) or [])
    monkeypatch.setattr("souk.training.ablation.score", lambda *a: 0.5)
    with FITTERS.override("fake", FitterEntry(_fake, options={"grams": 3})), \
            IDEAS.override("fake.grams", Idea("fake", "grams", "n-grams", on=3, off=0)):
        report = ablate(product_index, DATA, None, ["fake.grams"], tmp_path / "rep", budget_s=30, stages=["fake"])
    assert given == [{"fake": {"grams": 3}}, {"fake": {"grams": 0}}]
    assert [r["arm"] for r in report["rows"]] == ["on", "off"]
    assert {i["idea"]: i["default"] for i in known_ideas()}["wordvec.latin_grams"] == 3


def test_an_idea_is_on_by_default_where_it_gains_in_one_pipeline_and_loses_in_none():
    from souk.training.ablation import verdicts

    def report(on_hybrid, on_full):
        rows = [{"idea": "x.y", "arm": "off", "held_out_train": {"hybrid": 0.80, "full": 0.85}},
                {"idea": "x.y", "arm": "on", "held_out_train": {"hybrid": on_hybrid, "full": on_full}}]
        return {"pipelines": ["hybrid", "full"], "rows": rows}

    assert verdicts(report(0.80, 0.86))["x.y"]["on_by_default"] is True  # hybrid untouched (a wordvec idea)
    assert verdicts(report(0.79, 0.87))["x.y"]["on_by_default"] is False  # recall lost what the last stage won
    assert verdicts(report(0.80, 0.85))["x.y"]["on_by_default"] is False  # no gain anywhere
