"""Online learning from clicks, on simulated users with known preferences and a known position bias."""
from __future__ import annotations

import json

import numpy as np
import pytest

from souk.errors import DatasetError
from souk.index import Index
from souk.index.terms import TermStore
from souk.ranking.clicks import ClickModel, active_click_model, scores_for
from souk.ranking.pipeline import build_pipeline
from souk.schema import Schema
from souk.training.online import Impression, PositionBias, learn, learn_log, read_log

BRANDS = ["acme", "bolt", "orbit", "zenith"]  # shown in this order: the preferred brand always last
TYPES = ["drill", "saw", "hammer", "lamp", "fan", "pump"]
HIDDEN = {"zenith": 2.0, "acme": -2.0, "price": -2.0}  # users like zenith, dislike acme, like cheap


def catalog(rng):
    return [{"sku": f"{b}-{t}", "title": f"{b} {t}", "brand": b, "price": float(rng.integers(10, 200))}
            for b in BRANDS for t in TYPES]


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    from souk.catalogs import Record

    rng = np.random.default_rng(0)
    products = catalog(rng)
    schema = Schema.from_dict({"id": "sku", "fields": {
        "sku": {"kind": "keyword"}, "title": {"kind": "text"}, "brand": {"kind": "keyword"},
        "price": {"kind": "number", "feature": True}},
        "pipelines": {"boosted": {"stages": [{"stage": "recall"}, {"stage": "clicks", "weight": 1.0}]}}})
    path = tmp_path_factory.mktemp("shop") / "index"
    index = Index.create(path, schema)
    with index.writer() as w:
        w.add([Record(i + 1, p) for i, p in enumerate(products)])
        w.commit()
    return path, products


def utility(product, shown_prices):
    rank = np.argsort(np.argsort(shown_prices))[shown_prices.index(product["price"])] / (len(shown_prices) - 1) - 0.5
    return -0.5 + HIDDEN.get(product["brand"], 0.0) + HIDDEN["price"] * rank


def simulate(products, n, rng, eta=1.0):
    """Impressions of one product type at a time, always in brand order; clicks = examined x attracted."""
    by_type = {t: [p for p in products if p["sku"].endswith(t)] for t in TYPES}
    out = []
    for r in range(n):
        t = TYPES[r % len(TYPES)]
        shown = by_type[t]
        prices = [p["price"] for p in shown]
        clicked = [p["sku"] for rank, p in enumerate(shown, 1)
                   if rng.random() < rank ** -eta * (1 / (1 + np.exp(-utility(p, prices))))]
        out.append(Impression(f"r{r}", t, [p["sku"] for p in shown], set(clicked)))
    return out


def learned_doc_scores(model, terms, products, query):
    ids = [p["sku"] for p in products if p["sku"].endswith(query)]
    return ids, scores_for(model, terms, query, ids)


@pytest.mark.slow
def test_ipw_recovers_hidden_preferences_that_position_hides(shop):
    path, products = shop
    terms = TermStore.open(Index.open(path).searcher())
    log = simulate(products, 3000, np.random.default_rng(1))
    corrected, naive = ClickModel(bits=16), ClickModel(bits=16)
    stats = learn(corrected, terms, log, PositionBias(eta=1.0))
    learn(naive, terms, log, PositionBias(eta=0.0))
    assert stats.impressions == 3000 and stats.clicks > 500
    # weights of the named preference features point the hidden way
    def w(m, kind, *parts):
        return float(m.weights(np.asarray([m.coordinate(kind, *parts)]))[0])

    learned = np.asarray([w(corrected, "keyword", "brand", "zenith"), w(corrected, "keyword", "brand", "acme"),
                          w(corrected, "number", "price")])
    hidden = np.asarray([HIDDEN["zenith"], HIDDEN["acme"], HIDDEN["price"]])
    assert learned[0] > 0 > learned[1] and learned[2] < 0
    assert learned @ hidden / np.linalg.norm(learned) / np.linalg.norm(hidden) > 0.8
    # the preferred product moves up: it tops its type under the corrected model, not under the naive one
    tops_corrected, tops_naive = 0, 0
    for t in TYPES:
        ids, s = learned_doc_scores(corrected, terms, products, t)
        tops_corrected += ids[int(np.argmax(s))].startswith("zenith")
        ids, s = learned_doc_scores(naive, terms, products, t)
        tops_naive += ids[int(np.argmax(s))].startswith("zenith")
    assert tops_corrected >= 5 and tops_naive <= 2


@pytest.mark.slow
def test_the_clicks_stage_boosts_what_users_prefer(shop, tmp_path):
    path, products = shop
    log = tmp_path / "clicks.jsonl"
    with log.open("w") as fh:
        for imp in simulate(products, 1500, np.random.default_rng(2)):
            fh.write(json.dumps({"request": imp.request, "query": imp.query, "shown": imp.shown,
                                 "clicked": sorted(imp.clicked)}) + "\n")
    out = learn_log(path, log, progress=False)
    assert out["model"] == "clicks-1" and out["impressions"] == 1500
    assert isinstance(active_click_model(path), ClickModel)
    plain, boosted = build_pipeline("bm25", Index.open(path)), build_pipeline("boosted", Index.open(path))
    zenith_first = [boosted.search(t, 4).ids[0].startswith("zenith") for t in TYPES]
    assert sum(zenith_first) >= 5
    assert sum(zenith_first) > sum(plain.search(t, 4).ids[0].startswith("zenith") for t in TYPES)


def test_malformed_logs_name_the_line(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"query": "saw", "shown": ["a"]}\n{"query": "saw"}\n')
    with pytest.raises(DatasetError, match="log.jsonl:2: an impression needs"):
        list(read_log(log))


def test_an_id_repeated_in_shown_counts_its_click_once(shop, tmp_path):
    """The same click with `shown` listing the clicked id 50 times moves the model exactly like listing it once."""
    path, products = shop
    terms = TermStore.open(Index.open(path).searcher())
    log = tmp_path / "log.jsonl"
    once = {"request": "r", "query": "drill", "shown": ["bolt-drill", "acme-drill", "zenith-drill"],
            "clicked": ["zenith-drill"]}
    many = {**once, "shown": ["bolt-drill", "acme-drill", "zenith-drill"] + ["zenith-drill"] * 50 + ["acme-drill"]}
    log.write_text(json.dumps(once) + "\n" + json.dumps(many) + "\n")
    first, second = list(read_log(log))
    assert second.shown == once["shown"] and second.ranks == [1, 2, 3] and first.ranks is None
    models = []
    for imp in (first, second):
        model = ClickModel()
        stats = learn(model, terms, [imp], PositionBias())
        assert (stats.examples, stats.clicks) == (3, 1)
        models.append(model)
    assert np.array_equal(models[0].z, models[1].z) and np.array_equal(models[0].n, models[1].n)
    gap = {"request": "g", "query": "drill", "shown": ["bolt-drill", "bolt-drill", "acme-drill"],
           "clicked": ["acme-drill"]}
    log.write_text(json.dumps(gap) + "\n")
    [imp] = read_log(log)
    assert imp.shown == ["bolt-drill", "acme-drill"] and imp.ranks == [1, 3]  # acme keeps its display rank 3


def test_undecodable_or_unreadable_log_lines_name_the_line(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_bytes(b'{"query": "saw", "shown": ["a"]}\n{"query": "s\xffw", "shown": ["a"]}\n')
    with pytest.raises(DatasetError, match="log.jsonl:2: not UTF-8"):
        list(read_log(log))
    log.write_text('{"query": "saw", "shown": ["a"], "n": %s}\n' % ("9" * 5000))
    with pytest.raises(DatasetError, match="log.jsonl:1: not a readable JSON object"):
        list(read_log(log))


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shown=st.lists(st.sampled_from(["acme-saw", "bolt-saw", "orbit-saw", "zenith-saw", "nope"]), min_size=1,
                      max_size=30),
       data=st.data())
def test_property_repeats_in_shown_never_add_clicks_or_examples(shop, shown, data):
    path, _ = shop
    terms = TermStore.open(Index.open(path).searcher())
    clicked = set(data.draw(st.lists(st.sampled_from(shown), max_size=3)))
    from souk.training.online import _impression

    imp = _impression("r", "saw", shown, clicked, set(), None)
    unique = list(dict.fromkeys(shown))
    assert imp.shown == unique and (imp.ranks or list(range(1, len(unique) + 1))) == [
        shown.index(i) + 1 for i in unique
    ]
    stats = learn(ClickModel(), terms, [imp], PositionBias())
    known = [i for i in unique if i != "nope"]
    assert stats.examples == len(known) and stats.clicks == len(clicked & set(known))
