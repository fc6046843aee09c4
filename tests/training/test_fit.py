"""`fit` with an in-process fake fitter: budgets, publishing, and failures that leave models alone."""

import pytest

from souk.errors import ConfigError
from souk.evaluation.datasets import Dataset
from souk.models.store import ModelStore
from souk.training.fit import FITTERS, FitterEntry, fit

DATA = Dataset.from_parts({"q1": "iphone case"}, {"q1": {"A1": 1}}, name="tiny", split="train")
CALLS = []


def _fake(job):
    CALLS.append(job.seconds_left)
    (job.workdir / "weights.txt").write_text("w=1")
    if job.options.get("fail"):
        raise RuntimeError("boom")
    return {"kind": "fake", "dev": {"ndcg@10": 1.0}}


@pytest.fixture(autouse=True)
def fake_fitter():
    with FITTERS.override("fake", FitterEntry(_fake, applies=lambda schema: False)):
        yield


def test_fit_publishes_and_activates(product_index):
    [outcome] = fit(product_index, DATA, None, ["fake"], budget_s=60)
    store = ModelStore(product_index)
    assert store.active("fake").name == outcome.model
    assert (store.active("fake") / "weights.txt").read_text() == "w=1"
    assert 0 < CALLS[-1] <= 60
    assert outcome.manifest["data"]["train"] == "tiny/train"


def test_a_failing_fit_leaves_the_active_model_and_no_debris(product_index):
    fit(product_index, DATA, None, ["fake"], budget_s=60)
    store = ModelStore(product_index)
    before = store.active("fake")
    with pytest.raises(RuntimeError):
        fit(product_index, DATA, None, ["fake"], budget_s=60, options={"fake": {"fail": True}})
    assert store.active("fake") == before
    assert not list(store.root.glob(".tmp-*"))


def test_unknown_stage_and_bad_budget(product_index):
    with pytest.raises(ConfigError, match="unknown stage 'nope'"):
        fit(product_index, DATA, None, ["nope"])
    with pytest.raises(ConfigError, match="--budget-min must be positive"):
        fit(product_index, DATA, None, ["fake"], budget_s=0)


def test_options_are_checked_against_each_fitters_declared_options():
    from souk.training.fit import check_options

    assert check_options({"bi": {"lr": 1, "epochs": 2}, "ltr": {"rounds": 5}}) == {
        "bi": {"lr": 1.0, "epochs": 2}, "ltr": {"rounds": 5}}  # an int given for a float default becomes a float
    assert check_options({"fake": {"anything": [1]}}) == {"fake": {"anything": [1]}}  # undeclared: passed through
    with pytest.raises(ConfigError, match="unknown stage 'bx'; stages that can be fitted: .*bi"):
        check_options({"bx": {"lr": 1}})
    with pytest.raises(ConfigError, match="bi: unknown key 'lrr'; allowed: .*lr"):
        check_options({"bi": {"lrr": 1}})
    assert check_options({"words": {"new_words": True}, "cross": {"mlm": True}}) == {
        "words": {"new_words": True}, "cross": {"mlm": True}}  # every built-in fitter declares its options
    with pytest.raises(ConfigError, match="words: unknown key 'new_word'; allowed: .*new_words"):
        check_options({"words": {"new_word": True}})
    with pytest.raises(ConfigError, match="bi.epochs: expected an integer, got 'x'"):
        check_options({"bi": {"epochs": "x"}})
    with pytest.raises(ConfigError, match="fusion.stacking: expected true or false"):
        check_options({"fusion": {"stacking": 1}})


def test_a_bad_option_fails_before_any_fitting(product_index):
    CALLS.clear()
    with pytest.raises(ConfigError, match="cross: unknown key"):
        fit(product_index, DATA, None, ["fake"], budget_s=60, options={"cross": {"nope": True}})
    assert CALLS == []


def test_a_skipped_fit_publishes_nothing(product_index):
    def skip(job):
        (job.workdir / "x").write_text("x")
        return {"skipped": "option off"}

    with FITTERS.override("skip", FitterEntry(skip)):
        [out] = fit(product_index, DATA, None, ["skip"], budget_s=60)
    assert out.model is None and out.manifest["skipped"] == "option off" and not out.manifest["active"]
    assert not [p for p in ModelStore(product_index).root.iterdir() if p.name.startswith(("skip", ".tmp"))]
