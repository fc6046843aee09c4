"""The wordvec and interact fitters on the tiny Chinese fixture, and on a slice of real qbqtc."""
import json
import random

import pytest

from souk.errors import ConfigError, Unavailable
from souk.evaluation.datasets import load_beir
from souk.index import Index
from souk.models.store import ModelStore
from souk.models.word_vectors import WordVectors
from souk.training.wordvec import reads_han
from support import DATA, FIXTURES, needs_shared
from zh_mini import FAST, build_index, copy_of_fitted, fit_fast, fitted_index


def test_manifest_says_what_was_learned_and_what_it_reads():
    store = ModelStore(fitted_index())
    path = store.active("wordvec")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["kind"] == "wordvec" and "han" in manifest["reads"]
    assert manifest["commit_id"] == Index.open(fitted_index()).searcher().commit_id
    weight, held = manifest["fusion_weight"], manifest["fusion_held_out"]
    if manifest["held_out_queries"]:  # the best weight on held-out train queries
        assert held[str(weight)] == max(held.values())
    else:  # under 50 train queries (this fixture) none are held out: the default weight, nothing measured
        assert weight == 0.3 and held == {}
    assert manifest["curve"]["ndcg@10"][0] > 0.5  # untrained (random vectors, SIF weights): lexical matching
    assert manifest["features"]["chars"] > 0 and manifest["features"]["bigrams"] > 0
    assert manifest["features"]["latin_grams"] == 3 and WordVectors.load(path).latin_grams == 3
    assert (path / "curve.png").stat().st_size > 1000 and (path / "corpus" / "view.json").is_file()
    interact = json.loads(
        (store.root / sorted(p.name for p in store.root.glob("interact-*"))[-1] / "manifest.json").read_text()
    )
    assert interact["kind"] == "interact" and interact["dev"]["recall_ndcg@10"] > 0


def test_a_failed_fit_leaves_the_active_model_alone(tmp_path, monkeypatch):
    path = copy_of_fitted(tmp_path)
    store = ModelStore(path)
    before = store.active("wordvec")

    def broken(*args, **kwargs):
        raise RuntimeError("training exploded")

    monkeypatch.setattr("souk.training.wordvec._fine_tune", broken)
    with pytest.raises(RuntimeError, match="training exploded"):
        fit_fast(path, stages=("wordvec",))
    assert store.active("wordvec") == before
    assert not list(store.root.glob(".tmp-*"))


def test_latin_ngrams_can_be_turned_off_and_a_bad_n_is_refused_before_training(tmp_path):
    path = copy_of_fitted(tmp_path)
    with pytest.raises(ConfigError, match="latin_grams"):
        fit_fast(path, stages=("wordvec",), options={"wordvec": {**FAST["wordvec"], "latin_grams": 7}})
    fit_fast(path, stages=("wordvec",), options={"wordvec": {**FAST["wordvec"], "latin_grams": 0}})
    off = WordVectors.load(ModelStore(path).active("wordvec"))
    assert off.latin_grams == 0 and not any(f.startswith("##") and f.isascii() for f in off.features)


def test_applies_to_chinese_indexes_only(tmp_path):
    zh = Index.open(fitted_index())
    assert reads_han(zh.schema, zh)
    en = build_index(tmp_path / "en", FIXTURES / "beir-mini")
    assert not reads_han(en.schema, en)


def test_interact_needs_a_wordvec_model(tmp_path):
    build_index(tmp_path / "plain")
    with pytest.raises(Unavailable, match="wordvec"):
        fit_fast(tmp_path / "plain", stages=("interact",))


@pytest.fixture(scope="module")
def qbqtc_slice(tmp_path_factory):
    """300 train and 100 dev qbqtc queries over 1,000 titles (their judged titles plus others)."""
    src, dst = DATA / "qbqtc", tmp_path_factory.mktemp("qbqtc-slice")
    (dst / "qrels").mkdir()
    rng = random.Random(3)
    keep_docs = set()
    for split, n in (("train", 300), ("dev", 100)):
        lines = (src / "qrels" / f"{split}.tsv").read_text().splitlines()
        by_query: dict[str, list[str]] = {}
        for line in lines[1:]:
            by_query.setdefault(line.split("\t")[0], []).append(line)
        chosen = rng.sample(sorted(by_query), n)
        rows = [row for q in chosen for row in by_query[q]]
        keep_docs.update(r.split("\t")[1] for r in rows)
        (dst / "qrels" / f"{split}.tsv").write_text("\n".join([lines[0], *rows]) + "\n")
    docs = (src / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    others = [d for d in docs if json.loads(d)["_id"] not in keep_docs]
    kept = [d for d in docs if json.loads(d)["_id"] in keep_docs] + rng.sample(others, 1000 - len(keep_docs))
    (dst / "corpus.jsonl").write_text("\n".join(kept) + "\n", encoding="utf-8")
    (dst / "queries.jsonl").write_text((src / "queries.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
    return dst


@needs_shared("data", "qbqtc")
def test_fine_tuning_and_interaction_learn_on_real_qbqtc(qbqtc_slice, tmp_path):
    build_index(tmp_path / "index", qbqtc_slice)
    options = {"wordvec": {**FAST["wordvec"], "dim": 48, "batch_size": 64, "lr": 0.01, "epochs": 3},
               "interact": {"epochs": 3, "train_depth": 20, "depth": 50}}
    wordvec, interact = fit_fast(tmp_path / "index", budget_s=300, data=qbqtc_slice, options=options)
    curve = wordvec.manifest["curve"]["ndcg@10"]
    # the best epoch is kept, and the untrained vectors stay when fine-tuning does not beat them on this slice
    assert wordvec.manifest["dev"]["ndcg@10"] == max(curve), curve
    assert wordvec.manifest["curve"]["best_epoch"] == curve.index(max(curve)), curve
    dev, icurve = interact.manifest["dev"], interact.manifest["curve"]["ndcg@10"]
    assert max(icurve[1:]) > icurve[0], icurve  # the interaction model learns from its untrained start
    # it is made active only when it beats recall's own order on dev
    assert ModelStore(tmp_path / "index").active("interact") is None or dev["ndcg@10"] > dev["recall_ndcg@10"]
    assert interact.manifest["active"] == (dev["ndcg@10"] > dev["recall_ndcg@10"])
    assert len(load_beir(qbqtc_slice, "dev")) == 100
