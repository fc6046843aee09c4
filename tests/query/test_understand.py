"""Shop defaults on an inferred schema: typos forgiven per word, every word counts, no silent junk."""
from __future__ import annotations

import json

import pytest

from souk.errors import ConfigError
from souk.query.understand import DEFAULT_STEPS, query_steps
from support import run_main

CATALOG = [
    {"sku": "p1", "name": "Jigsaw Puzzle 1000 Pieces for Adults", "price": 15},
    {"sku": "p2", "name": "Wooden Puzzle Box for Kids", "price": 8},
    {"sku": "p3", "name": "Pirate Costume for Adults", "price": 25},
    {"sku": "p4", "name": "Adults Colouring Book", "price": 6},
    {"sku": "p5", "name": "Longboard Skateboard Maple", "price": 90},
    {"sku": "p6", "name": "Longboard Wheels 70mm", "price": 20},
    {"sku": "z1", "name": "阿玛尼 粉底液 权力", "price": 500},
    {"sku": "z2", "name": "兰蔻 持妆 粉底液", "price": 450},
    {"sku": "z3", "name": "夜精华 修护 精华", "price": 300},
    {"sku": "z4", "name": "夜间 修护 面霜", "price": 200},
    {"sku": "z5", "name": "完美日记 口红 花 限定", "price": 99},
    {"sku": "z6", "name": "兰蔻 眼霜", "price": 400},
]


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    root = tmp_path_factory.mktemp("shop")
    path = root / "catalog.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in CATALOG) + "\n", encoding="utf-8")
    run_main("index", str(path), "--index", str(root / "index"))  # schema inferred, defaults only
    from souk.engine import Engine

    return Engine.open(root / "index")


def ids(result):
    return [h.id for h in result.hits]


def test_spell_is_a_default_step_and_match_keys_are_known():
    assert DEFAULT_STEPS == ("syntax", "spell")
    assert query_steps({"match": "all", "relax_below": 3})[0] == ["syntax", "spell"]
    with pytest.raises(ConfigError, match="query.matc: unknown key"):
        query_steps({"matc": "all"})


def test_a_typo_among_other_words_is_corrected(shop):
    res = shop.search("puzle for adults", sort="price")
    assert res.searched == "puzzle for adults" and ids(res) == ["p1"] and not res.relaxed  # no adult costume
    assert shop.search("粉底夜").searched == "粉底液"  # 夜 sounds like 液; not the 夜精华 serum
    assert set(ids(shop.search("粉底夜"))) == {"z1", "z2"}


def test_a_misspelled_word_alone_is_corrected(shop):
    res = shop.search("longbord")
    assert res.searched == "longboard" and set(ids(res)) == {"p5", "p6"}


def test_two_words_sorted_by_price_hold_both(shop):
    res = shop.search("兰蔻 粉底液", sort="price")
    assert ids(res) == ["z2"]  # the only product holding both, though others are cheaper
    res = shop.search("兰蔻 粉底液 口红", sort="price")  # no product holds all three: relaxed, flagged
    assert res.relaxed and res.dropped == ["口红"] and ids(res) == ["z2"]


def test_no_acceptable_match_means_no_hits(shop):
    res = shop.search("花西子")  # a brand the catalog lacks: never the lipstick holding 花
    assert res.total == 0 and res.hits == []


def test_a_query_finding_nothing_offers_queries_that_find_something(shop):
    res = shop.search("longbo")  # a word cut short: no product holds it, completions do
    assert res.total == 0 and res.hits == [] and res.did_you_mean is None
    assert res.suggestions and res.suggestions[0] == "longboard"
    assert all(shop.search(s, record=False).total > 0 for s in res.suggestions)
    assert res.to_dict()["suggestions"] == res.suggestions
    assert shop.search("longboard").suggestions == []  # a query with hits gets none
