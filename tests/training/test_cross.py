"""Fitter `cross` on a tiny random BERT: it learns, publishes a loadable model, and an interrupted fit
leaves the active model alone."""
from __future__ import annotations

import itertools
import json
import time

import numpy as np
import pytest

from souk.models.cross_encoder import CrossEncoder
from souk.models.store import ModelStore
from souk.training import losses
from souk.training.cross import (DEFAULTS, STAGE_COST, choose_weight, cross_validated_gain, mix_gain, split_queries,
                                 standing_cross)
from souk.training.fit import fit
from souk.training.kit import split_train
from tiny_bert import FIT_OPTIONS


def test_the_fit_learns_beyond_the_untrained_model(tiny_cross):
    manifest = tiny_cross["outcome"].manifest
    dev = manifest["dev"]
    assert dev["cross_ndcg@10"] >= dev["untrained_cross_ndcg@10"] + 0.1, manifest["training"]["curve"]
    assert manifest["kind"] == "cross-encoder" and manifest["device"] == "cpu"
    assert manifest["training"]["weak_groups"] > 0 and manifest["training"]["steps"] > 0
    folder = tiny_cross["index"] / "models" / tiny_cross["outcome"].model  # the head reads the tokens' mean
    assert json.loads((folder / "config.json").read_text())["souk_pooling"] == "mean"
    weight, by_weight = manifest["combination"]["weight"], manifest["held_out"]["by_weight"]
    assert set(by_weight) >= {"0.00", "1.00"} and manifest["held_out"]["weight"] == weight
    # the mix kept is the best on the held-out train queries (the smallest weight on ties)
    assert by_weight[f"{weight:.2f}"] == max(by_weight.values())
    assert all(by_weight[w] < max(by_weight.values()) for w in by_weight if float(w) < weight)
    assert manifest["limits"] == {"max_length": 64, "query": 8, "title": 16}


def test_the_published_model_round_trips(tiny_cross):
    store = ModelStore(tiny_cross["index"])
    path = store.root / tiny_cross["outcome"].model
    assert (path / "curve.png").stat().st_size > 0 and (path / "tokenizer.json").is_file()
    model = CrossEncoder(path, backend="torch-fp32")
    a = model.score("t4 red", [("t4 red", "kit set"), ("t9 blue", "wood metal")])
    b = CrossEncoder(path, backend="torch-fp32", batch_size=1).score(
        "t4 red", [("t4 red", "kit set"), ("t9 blue", "wood metal")]
    )
    assert a.shape == (2,) and np.allclose(a, b, atol=1e-5)


def test_an_interrupted_fit_leaves_the_active_model(tiny_cross, monkeypatch):
    store = ModelStore(tiny_cross["index"])
    store.activate(tiny_cross["outcome"].model)
    before = sorted(p.name for p in store.root.iterdir())

    def boom(scores, labels=None):
        raise KeyboardInterrupt

    monkeypatch.setitem(losses.LOSSES, "boom", boom)
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_cross["index"], tiny_cross["train"], tiny_cross["dev"], ["cross"], budget_s=60, progress=False,
            options={"cross": {**FIT_OPTIONS, "base": str(tiny_cross["base"]), "weak_groups": 0, "loss": "boom"}})
    assert store.active("cross").name == tiny_cross["outcome"].model
    assert sorted(p.name for p in store.root.iterdir()) == before


def test_the_mix_weight_is_chosen_on_held_out_train_queries(tiny_cross):
    from souk.evaluation.datasets import Dataset

    data = Dataset({"q": "x"}, {"q": {"good": 1}})
    heads = {"q": (["bad", "good"], np.array([2.0, 1.0], dtype=np.float32))}  # the prior has it wrong
    weight, table = choose_weight(data, heads, {"q": np.array([0.0, 5.0], dtype=np.float32)})
    assert weight >= 0.5 and table["1.00"] == 1.0 and table["0.00"] < 1.0
    train, held = split_train(tiny_cross["train"], 0.2, 300, np.random.default_rng(1))
    assert not set(train.qrels) & set(held.qrels) and len(held) == round(len(tiny_cross["train"]) * 0.2)


def test_the_mix_gain_comes_with_its_standard_error_over_paired_queries():
    from souk.evaluation.datasets import Dataset

    qrels = {f"q{i}": {"good": 1} for i in range(4)}
    data = Dataset({q: "x" for q in qrels}, qrels)
    wrong = (["bad", "good"], np.array([2.0, 1.0], dtype=np.float32))  # the prior ranks the relevant one second
    right = (["good", "bad"], np.array([2.0, 1.0], dtype=np.float32))
    heads = {"q0": wrong, "q1": right, "q2": right, "q3": right}
    fixes = {q: np.array([0.0, 5.0] if q == "q0" else [5.0, 0.0], dtype=np.float32) for q in qrels}
    gain, se = mix_gain(data, heads, fixes, 1.0)  # one query of four moves from nDCG 1/log2(3) to 1
    d = 1.0 - 1.0 / np.log2(3)
    assert gain == pytest.approx(d / 4) and se == pytest.approx(np.std([d, 0, 0, 0], ddof=1) / 2)
    assert gain <= se  # one query of four: within one standard error, so the stage would stay inactive
    assert mix_gain(data, heads, fixes, 0.0) == (0.0, 0.0)
    heads = {q: wrong for q in qrels}
    fixes = {q: np.array([0.0, 5.0], dtype=np.float32) for q in qrels}
    assert mix_gain(data, heads, fixes, 1.0) == (pytest.approx(d), 0.0)  # every query gains alike: no doubt


def test_the_cross_validated_gain_scores_each_fold_at_a_weight_chosen_on_the_others():
    from souk.evaluation.datasets import Dataset

    qrels = {f"q{i:02d}": {"good": 1} for i in range(20)}
    data = Dataset({q: "x" for q in qrels}, qrels)
    wrong = (["bad", "good"], np.array([2.0, 1.0], dtype=np.float32))
    heads = {q: wrong for q in qrels}
    helps = {q: np.array([0.0, 5.0], dtype=np.float32) for q in qrels}  # the cross fixes every query
    d = 1.0 - 1.0 / np.log2(3)
    assert cross_validated_gain(data, heads, helps, 5, seed=1) == (pytest.approx(d), pytest.approx(0.0, abs=1e-12))
    # a cross that fixes one query and is no use elsewhere: the weight that query alone picks wins where it was
    # chosen, and gains nothing on the fold holding that query (chosen without it: weight 0)
    lucky = {q: np.array([0.0, 5.0] if q == "q00" else [0.0, 0.0], dtype=np.float32) for q in qrels}
    heads_lucky = {q: (wrong if q == "q00" else (["good", "bad"], np.array([2.0, 1.0], dtype=np.float32)))
                   for q in qrels}
    in_sample, _ = mix_gain(data, heads_lucky, lucky, choose_weight(data, heads_lucky, lucky)[0])
    assert in_sample == pytest.approx(d / 20)
    assert cross_validated_gain(data, heads_lucky, lucky, 5, seed=1) == (0.0, 0.0)


def test_losses_check_their_groups():
    import torch

    scores = torch.tensor([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    good, bad = losses.listwise(scores[:1]), losses.listwise(scores[1:])
    assert good < bad
    assert losses.pointwise(scores, torch.tensor([[1.0, 0, 0], [1.0, 0, 0]])) > 0
    with pytest.raises(ValueError, match="1 positive"):
        losses.listwise(torch.zeros(4))
    with pytest.raises(ValueError, match="shape of scores"):
        losses.pointwise(scores, torch.zeros(2, 2))


@pytest.mark.slow
def test_the_mix_is_chosen_against_the_ltr_scores_of_queries_it_never_saw(tmp_path):
    from souk.errors import ModelUnavailable
    from souk.evaluation.datasets import load_beir
    from souk.index import Index
    from souk.models.store import ModelStore
    from souk.training.cross import held_out_heads
    from souk.training.kit import prior_pipeline, subset
    from souk.training.ltr import OUT_OF_FOLD_FILE
    from ltr_shop import SHOP, shop_index

    index = shop_index(tmp_path / "index")
    train = load_beir(SHOP, "train")
    held = subset(train, sorted(train.qrels)[:10], "train (held out)")
    prior = prior_pipeline(Index.open(index).searcher())
    kept, heads, where = held_out_heads(index, held, prior)  # no ltr yet: the served prior
    assert where.startswith("previous stages as served") and kept is held and set(heads) == set(held.qrels)
    [outcome] = fit(index, train, load_beir(SHOP, "dev"), ["ltr"], budget_s=60, seed=3, progress=False)
    kept, oof, where = held_out_heads(index, held, prior)
    assert where == "ltr out-of-fold scores" and set(oof) == set(kept.qrels) and len(kept.qrels) >= 5
    served = {q: dict(zip(ids, s.tolist())) for q, (ids, s) in candidates_of(prior, kept).items()}
    assert any(abs(served[q][d] - float(s)) > 1e-4 for q, (ids, scores) in oof.items()
               for d, s in zip(ids, scores) if d in served[q])  # not the served booster's scores
    assert held_out_heads(index, held, prior, out_of_fold=False)[2] == "previous stages as served"
    model = ModelStore(index).root / outcome.model
    (model / OUT_OF_FOLD_FILE).write_text('{"queries": {"q": {"ids": ["a"], "scores": []}}}')
    with pytest.raises(ModelUnavailable, match="damaged"):  # the file hash is checked before it is read
        held_out_heads(index, held, prior)


def candidates_of(prior, data):
    from souk.training.cross import RERANK_DEPTH
    from souk.training.kit import candidates

    return candidates(prior, data.queries, RERANK_DEPTH)


@pytest.mark.slow
def test_train_queries_are_capped_by_train_max(tiny_cross, tmp_path):
    import shutil

    index = tmp_path / "index"
    shutil.copytree(tiny_cross["index"], index)
    [outcome] = fit(index, tiny_cross["train"], tiny_cross["dev"], ["cross"], budget_s=60, progress=False,
                    options={"cross": {**FIT_OPTIONS, "base": str(tiny_cross["base"]), "epochs": 1, "weak_groups": 0,
                                       "train_max": 5}})
    assert outcome.manifest["training"]["train_queries"] == 5 < len(tiny_cross["train"].qrels) * 0.8


@pytest.mark.slow
def test_a_head_the_budget_never_trained_stays_inactive(tiny_cross, tmp_path):
    import shutil

    index = tmp_path / "index"
    shutil.copytree(tiny_cross["index"], index)
    [outcome] = fit(index, tiny_cross["train"], tiny_cross["dev"], ["cross"], budget_s=0.01, progress=False,
                    options={"cross": {**FIT_OPTIONS, "base": str(tiny_cross["base"]), "weak_groups": 0}})
    assert outcome.manifest["training"]["steps"] == 0
    assert outcome.manifest["active"] is False and "before a training step" in outcome.manifest["note"]
    assert ModelStore(index).active("cross") is None or ModelStore(index).active("cross").name != outcome.model


@pytest.mark.slow
def test_a_cross_that_does_not_pay_now_retires_the_one_active_before(tiny_cross, tmp_path):
    """A trained cross whose mix does not beat the stages fitted before it says the stage does not pay: the cross
    active from an earlier fit, its mix judged on other held-out queries (here: another seed's), goes too; one
    never trained keeps it."""
    import shutil

    index = shutil.copytree(tiny_cross["index"], tmp_path / "index")
    store = ModelStore(index)
    store.activate(tiny_cross["outcome"].model)
    options = {**FIT_OPTIONS, "base": str(tiny_cross["base"]), "weak_groups": 0, "layers": 1}
    [kept] = fit(index, tiny_cross["train"], tiny_cross["dev"], ["cross"], budget_s=0.01, progress=False, seed=14,
                 options={"cross": options})
    assert kept.manifest["training"]["steps"] == 0 and store.active("cross").name == tiny_cross["outcome"].model
    [outcome] = fit(index, tiny_cross["train"], tiny_cross["dev"], ["cross"], budget_s=20, progress=False, seed=14,
                    options={"cross": {**options, "min_gain_se": 1e9}})
    before = tiny_cross["outcome"].manifest["held_out"]["context"]
    assert outcome.manifest["held_out"]["context"] != before  # judged on other queries: gains do not compare
    assert outcome.manifest["training"]["steps"] > 0 and outcome.manifest["active"] is False
    assert outcome.manifest["retired"] == tiny_cross["outcome"].model and store.active("cross") is None


@pytest.mark.slow
def test_the_active_cross_judged_on_the_same_queries_and_stages_stays_when_the_new_one_does_not_pay(tiny_cross,
                                                                                                   tmp_path):
    """Same index, stages and held-out queries (the same seed): the active cross's cross-validated gain was measured
    where the new one's was, and passed the bar; a new cross that does not pass it leaves the old one active."""
    import shutil

    index = shutil.copytree(tiny_cross["index"], tmp_path / "index")
    store = ModelStore(index)
    store.activate(tiny_cross["outcome"].model)
    options = {**FIT_OPTIONS, "base": str(tiny_cross["base"]), "weak_groups": 0, "layers": 1, "min_gain_se": 1e9}
    [outcome] = fit(index, tiny_cross["train"], tiny_cross["dev"], ["cross"], budget_s=20, progress=False,
                    options={"cross": options})
    m = outcome.manifest
    assert m["held_out"]["context"] == tiny_cross["outcome"].manifest["held_out"]["context"]
    assert m["training"]["steps"] > 0 and m["active"] is False and "retired" not in m
    assert m["standing"]["model"] == tiny_cross["outcome"].model and "it stays" in m["note"]
    assert store.active("cross").name == tiny_cross["outcome"].model
    (index / "models" / tiny_cross["outcome"].model / "manifest.json").write_text("{}")  # tampered: not weighed
    assert standing_cross(index, m["held_out"]["context"]) is None


def _queries(n: int):
    from souk.evaluation.datasets import Dataset

    return Dataset.from_parts({f"q{i}": f"query {i}" for i in range(n)}, {f"q{i}": {"d": 1} for i in range(n)},
                              name="t", split="train")


def test_train_queries_past_train_max_choose_the_mix_too():
    data = _queries(60)
    opts = {**DEFAULTS, "held_out": 0.1, "held_out_max": 4, "train_max": 30, "held_out_spare": 20}
    train, held = split_queries(data, opts, np.random.default_rng(3), 3)
    share_held = split_train(data, 0.1, 4, np.random.default_rng(3))[1]
    assert len(train.qrels) == 30 and len(held.qrels) == 20  # 4 by the share, 16 of the 26 left over
    assert set(share_held.qrels) <= set(held.qrels) and not set(train.qrels) & set(held.qrels)
    assert split_queries(data, opts, np.random.default_rng(3), 3)[1].qrels == held.qrels  # seeded


def test_no_query_leaves_training_when_train_max_is_not_reached():
    data = _queries(30)
    opts = {**DEFAULTS, "held_out": 0.2, "held_out_max": 200, "train_max": 3000, "held_out_spare": 2000}
    train, held = split_queries(data, opts, np.random.default_rng(1), 1)
    assert (len(train.qrels), len(held.qrels)) == (24, 6)


def test_layers_are_chosen_by_the_time_this_machine_takes_per_layer(tiny_cross, monkeypatch, tmp_path):
    """`cross.latency_ms`: a 1-layer probe model from the base is timed on every offered path and a `most`-layer one
    on the fastest; their times a query's candidates give a fixed cost and a cost a layer that price the layers kept
    (at least one, at most the base's), and the probes leave no export."""
    from souk.models.cross_encoder import PATHS, FieldLimits, PairPacker, probe_pairs
    from souk.training.cross import measured_layers

    monkeypatch.setenv("SOUK_CACHE_DIR", str(tmp_path))
    base = tiny_cross["base"]
    packer = PairPacker(base / "tokenizer.json", FieldLimits(64, 8, 16))
    pairs = probe_pairs(packer, 40, 30)
    layers, timing = measured_layers(base, packer, pairs, 2, 25.0, 0)
    assert timing["path"] in PATHS and timing["pairs_per_s"][timing["path"]] == max(timing["pairs_per_s"].values())
    assert (timing["pairs"], timing["mean_tokens"]) == (40, 30.0) and set(timing["ms_probe"]) == {"1", "2"}
    fixed, per_layer = timing["ms_fixed"], timing["ms_per_layer"]
    assert fixed >= 0 and per_layer > 0 and fixed + 2 * per_layer == pytest.approx(timing["ms_probe"]["2"], abs=0.02)
    assert layers == max(1, min(2, int((25.0 - fixed) // per_layer)))
    assert measured_layers(base, packer, pairs, 2, 1e-3, 0)[0] == 1  # no budget: still one layer
    assert not list(tmp_path.glob("models/cross-*"))  # the probes' exports were removed with them
    params = tiny_cross["outcome"].manifest["params"]  # the fit chose its layers so (none were given) ...
    timing = params["layer_timing"]
    assert params["full_ms"] == timing["full_ms"] == 40.0 and timing["prior_ms"] > 0 and timing["read_ms"] > 0
    assert timing["other_cores"] is None or timing["other_cores"] >= 0  # who else ran while it was priced
    # ... for `full` in 40 ms: what the stages before the cross and reading the candidates leave the forward pass
    budget = max(0.0, (40.0 - timing["prior_ms"]) / STAGE_COST - timing["read_ms"])
    assert timing["latency_ms"] == pytest.approx(budget, abs=0.02)
    left = timing["latency_ms"] - timing["ms_fixed"]
    assert params["layers"] == max(1, min(2, int(left // timing["ms_per_layer"])))


def test_a_layer_costs_the_difference_between_the_probes_and_noise_falls_back_to_an_even_split(monkeypatch):
    """L layers cost a + b x L from a 1-layer and a 6-layer probe; probes that contradict that (the larger one
    cheaper a layer than the fixed part allows) split the larger probe's time evenly."""
    from souk.training import cross

    def timed(ms: dict[int, float]):
        def time_probe(base, packer, pairs, depths, seed, path, pooling="cls"):
            # every path at 1 layer; then 1 layer and the most, in turns, on the fastest path only
            assert (path, tuple(depths)) in ((None, (1,)), ("openvino-bf16", (1, 6)))
            pps = {d: 1000.0 * cross.RERANK_DEPTH / ms[d] for d in depths}
            return {d: {"openvino-bf16": {"pairs_per_s": pps[d]}, "torch-fp32": {"pairs_per_s": pps[d] / 3}}
                    for d in depths}
        return time_probe

    pairs = [([1, 2, 3], [0, 0, 0])] * 40
    monkeypatch.setattr(cross, "_time_probe", timed({1: 9.0, 6: 44.0}))  # a = 2, b = 7
    layers, timing = cross.measured_layers(None, None, pairs, 6, 30.5, 0)
    assert (timing["ms_fixed"], timing["ms_per_layer"], layers) == (2.0, 7.0, 4)  # 2 + 4 x 7 = 30
    assert timing["ms_probe"] == {"1": 9.0, "6": 44.0} and timing["path"] == "openvino-bf16"
    assert cross.measured_layers(None, None, pairs, 6, 29.5, 0)[0] == 3
    assert cross.measured_layers(None, None, pairs, 6, 500.0, 0)[0] == 6  # never more than the base has
    assert cross.measured_layers(None, None, pairs, 6, 1.0, 0)[0] == 1  # nor fewer than one
    monkeypatch.setattr(cross, "_time_probe", timed({1: 10.0, 6: 66.0}))  # b = 11.2 > the 1-layer's 10: noise
    layers, timing = cross.measured_layers(None, None, pairs, 6, 27.0, 0)
    assert (timing["ms_fixed"], timing["ms_per_layer"], layers) == (0.0, 11.0, 2)


def test_the_probe_reads_a_seeded_sample_of_queries_candidates_in_their_order(tiny_cross):
    from souk.models.cross_encoder import FieldLimits, PairPacker
    from souk.training.cross import RERANK_DEPTH, probe_queries
    from souk.training.data import DocTexts
    from souk.training.kit import candidates, fit_searcher, prior_pipeline

    base, data = tiny_cross["base"], tiny_cross["train"]
    searcher = fit_searcher(tiny_cross["index"])
    heads = candidates(prior_pipeline(searcher), data.queries, 30)
    packer = PairPacker(base / "tokenizer.json", FieldLimits(64, 8, 16))
    texts = DocTexts(searcher)
    pairs, read_ms = probe_queries(packer, data, heads, texts, 13, queries=3)
    assert read_ms > 0 and pairs == probe_queries(packer, data, heads, texts, 13, queries=3)[0]  # seeded
    assert pairs != probe_queries(packer, data, heads, texts, 14, queries=3)[0]
    depth = [min(RERANK_DEPTH, len(heads[q][0])) for q in sorted(data.qrels) if heads[q][0]]
    assert len(pairs) in {sum(c) for c in itertools.combinations(depth, 3)}
    first = next(q for q in sorted(data.qrels) if heads[q][0])
    one = probe_queries(packer, data, {first: heads[first]}, texts, 0, queries=3)[0]  # one query: its candidates
    docs = packer.doc_tokens(texts.get(heads[first][0][:RERANK_DEPTH]))  # ... in recall's order
    query = packer.tokens([data.queries[first]], packer.limits.query)[0]
    assert one == [packer.pack(query, d) for d in docs]


def test_the_forward_budget_is_what_full_ms_leaves_after_the_stages_before_the_cross():
    from souk.training.cross import forward_budget

    class Prior:  # a pipeline whose every run takes ~5 ms
        def plan(self, text):
            return text

        def run(self, plan, k):
            assert k == 20  # timed for the candidates the cross reorders
            time.sleep(0.005)

    queries = {str(i): f"query {i}" for i in range(20)}
    budget, spent = forward_budget({"full_ms": 40.0, "latency_ms": None}, Prior(), queries)
    assert 4.9 <= spent["prior_ms"] < 20 and budget == pytest.approx((40.0 - spent["prior_ms"]) / STAGE_COST)
    assert forward_budget({"full_ms": 3.0, "latency_ms": None}, Prior(), queries)[0] == 0.0  # nothing left: 1 layer
    assert forward_budget({"full_ms": 40.0, "latency_ms": 12.0}, Prior(), queries) == (12.0, {})  # given: kept
    assert forward_budget({"full_ms": None, "latency_ms": None}, Prior(), queries) == (None, {})  # LAYER_TOKENS


def test_a_layer_timing_that_fails_falls_back_to_the_fixed_budget_and_the_fit_goes_on(tiny_cross, monkeypatch,
                                                                                      tmp_path):
    import shutil

    from souk.training import cross

    def refused(*args, **kwargs):
        raise RuntimeError("an inference path refused the probe")

    monkeypatch.setattr(cross, "measured_layers", refused)
    index = shutil.copytree(tiny_cross["index"], tmp_path / "index")
    [outcome] = fit(index, tiny_cross["train"], tiny_cross["dev"], ["cross"], budget_s=5, progress=False,
                    options={"cross": {**FIT_OPTIONS, "base": str(tiny_cross["base"]), "weak_groups": 0}})
    params = outcome.manifest["params"]
    assert "RuntimeError" in params["layer_timing"]["skipped"] and params["layers"] >= 1
