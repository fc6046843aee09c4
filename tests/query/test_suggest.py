import time

import numpy as np
import pytest

from souk.errors import ConfigError, QueryError
from souk.query.suggest import SuggestConfig, Suggester, one_typo_spans, prefix_key, suggester_for, title_phrases


@pytest.fixture(scope="module")
def products(product_index):
    from souk.index import Index

    return Suggester.build(Index.open(product_index).searcher(), cache=False)


@pytest.fixture(scope="module")
def demo(demo_index):
    from souk.index import Index

    return Suggester.build(Index.open(demo_index).searcher())


def texts(suggestions):
    return [s.text for s in suggestions]


def test_english_prefix_completes_titles_phrases_and_entities(products):
    out = products.suggest("run", 5)
    assert texts(out)[:2] == ["running", "running shoes"] and out[0].source == "phrase"
    assert "Running Shoes Men's Lightweight Sneakers" in texts(out)
    nissin = products.suggest("Nissin", 5)
    assert nissin[0].text == "Nissin" and nissin[0].source == "entity"
    assert texts(products.suggest("ＷＩＲＥＬＥＳＳ", 3)) == ["Wireless Bluetooth Headphones Noise Cancelling"]
    assert products.suggest("zzz") == [] and products.suggest("   ") == []


def test_chinese_characters_traditional_and_simplified(products, demo):
    assert texts(products.suggest("嘉頓", 2))[0] == "嘉顿"  # typed traditional, catalog mixes both
    assert texts(products.suggest("跑步", 2)) == ["跑步", "跑步鞋"]  # equal weight: the shorter first
    out = demo.suggest("朱古", 5)
    assert out and all(s.text.startswith("朱古力") for s in out) and out[0].match == "prefix"


def test_pinyin_and_initials(demo, products):
    pinyin = demo.suggest("pingg", 5)
    initials = demo.suggest("pg", 5)
    assert pinyin[0].text == "苹果" and pinyin[0].match == "pinyin"
    assert initials[0].text == "苹果" and initials[0].match == "initials"
    assert texts(products.suggest("paobux", 1)) == ["跑步鞋"] and texts(products.suggest("pbx", 1)) == ["跑步鞋"]
    assert demo.suggest("苹果zh")[0].text.startswith("苹果汁")  # Han typed, then pinyin


def test_one_typo_prefixes(products, demo):
    out = products.suggest("runing", 3)
    assert texts(out)[:2] == ["running", "running shoes"] and all(s.match == "typo" for s in out)
    assert texts(products.suggest("wirless", 1)) == ["Wireless Bluetooth Headphones Noise Cancelling"]
    assert texts(products.suggest("rnning", 1)) == ["running"]  # a missing letter
    assert products.suggest("unning") == []  # the first character is trusted
    assert products.suggest("run", 10) and not any(s.match == "typo" for s in products.suggest("run", 10))
    assert demo.suggest("chocolat")[0].match == "prefix"
    assert any(s.text == "chocolate" and s.match == "typo" for s in demo.suggest("chocolste", 10))


def test_query_log_and_last_word_completion():
    s = Suggester.from_texts([["Meiji Fresh Milk 946ml"], ["Lipton Milk Tea 500ml"], ["Milk Tea Powder"]],
                             [["Meiji"], ["Lipton"], []], {"milk tea": 4, "MILK  tea latte": 1, "": 3})
    out = s.suggest("milk t", 3)
    assert texts(out) == ["milk tea", "milk tea latte", "Milk Tea Powder"]
    assert out[0].source == "log" and out[0].score == pytest.approx(4 * 3.0 + 2 * 1.0)  # log + phrase in 2 titles
    word = s.suggest("fresh milk t", 3)
    assert texts(word) == ["fresh milk tea"] and word[0].match == "word"  # `milk tea` is a known pair
    assert s.suggest("fresh milk x") == []


def test_title_phrases_respect_words_and_punctuation():
    phrases = set(title_phrases(prefix_key("Simpson Strong-Tie 12-Gauge Angle - Silver, for wood"), 3))
    assert {"simpson strong-tie", "simpson strong-tie 12-gauge", "angle", "silver", "wood"} <= phrases
    assert not any(p.startswith(("for", "-")) or p.endswith(("for", ",")) or "angle - silver" in p for p in phrases)
    han = set(title_phrases(prefix_key("嘉顿 柠檬夹心饼干 (200克)"), 3))
    assert "嘉顿" in han and not any("(" in p or p.endswith("200") for p in han)


def test_typo_walk_agrees_with_brute_force():
    rng = np.random.default_rng(0)
    words = ["".join(rng.choice(list("abcd"), size=rng.integers(3, 7))) for _ in range(300)]
    s = Suggester.from_texts([[w] for w in words], config=SuggestConfig(min_phrase_titles=1))
    table = s.tables["text"]
    for p in ["abca", "dcba", "bbbb", "acdd"]:
        got = {table.keys[r] for lo, hi in one_typo_spans(table, p) for r in range(lo, hi)}
        want = {k for k in table.keys if any(_one_edit(k[:n], p) for n in range(len(p) - 1, len(p) + 2))}
        assert got == want, p


def _one_edit(a: str, b: str) -> bool:
    """a within one edit of b (insert, delete, substitute, transpose), the first character fixed, a != b."""
    if a == b or not a or a[0] != b[0]:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]]
                                  and a[diff[1]] == b[diff[0]])
    if abs(len(a) - len(b)) != 1:
        return False
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return any(long_[:i] + long_[i + 1:] == short for i in range(1, len(long_)))


def test_cache_per_commit(tmp_path):
    import json

    from souk.catalogs import read_catalog
    from souk.index import Index
    from support import FIXTURES

    from souk.schema import infer_schema

    records = list(read_catalog(FIXTURES / "products.jsonl"))
    index = Index.create(tmp_path / "ix", infer_schema([r.data for r in records]))
    with index.writer() as w:
        w.add(records[:6])
        w.commit()
    first = Suggester.build(index.searcher())
    again = Suggester.build(index.searcher())
    assert not first.info["cached"] and again.info["cached"]
    assert texts(again.suggest("nis", 3)) == texts(first.suggest("nis", 3))
    assert len(list((tmp_path / "ix" / "cache").glob("suggest-*.npz"))) == 1
    extra = tmp_path / "extra.jsonl"
    extra.write_text(json.dumps({"sku": "Z1", "title": "Wireless Charger Pad", "brand": "Anker",
                                 "category": "Phone Accessories", "price": 1.0}) + "\n")
    with index.writer() as w:
        w.add(read_catalog(extra))
        w.commit()
    searcher = index.searcher()
    fresh = suggester_for(searcher)
    assert suggester_for(searcher) is fresh  # one per snapshot
    assert not fresh.info["cached"] and "Wireless Charger Pad" in texts(fresh.suggest("wireless"))
    assert len(list((tmp_path / "ix" / "cache").glob("suggest-*.npz"))) == 1  # the old commit's cache went


def test_bad_input(products, product_index):
    from souk.index import Index

    with pytest.raises(QueryError):
        products.suggest("x", -1)
    with pytest.raises(QueryError, match="too long"):
        products.suggest("x" * 500)
    with pytest.raises(ConfigError, match="no text/keyword/stored field 'nope'"):
        Suggester.build(Index.open(product_index).searcher(), fields=["nope"], cache=False)


def test_latency_on_the_demo_catalog(demo):
    prefixes = [w[:n] for w in ["chocolate", "milk powder", "朱古力饼干", "pingguo", "instant noodles",
                                "garden", "xuegao"]
                for n in range(1, len(w) + 1)]
    times = []
    for p in prefixes * 3:
        t = time.perf_counter()
        demo.suggest(p, 10)
        times.append(time.perf_counter() - t)
    assert np.median(times) < 0.005


def test_no_fragments_of_words_jieba_does_not_know():
    titles = [["兰蔻持妆粉底液 30ml"], ["兰蔻持妆粉底液 50ml"], ["粉底液遮瑕 自然色"], ["粉底液遮瑕 象牙白"]]
    suggester = Suggester.from_texts(titles)
    offered = texts(suggester.suggest("兰蔻", 10)) + texts(suggester.suggest("粉底液", 10))
    assert "兰蔻持妆" in offered and "粉底液遮瑕" in offered and "粉底液" in offered  # whole words and phrases
    assert not {"兰蔻持", "粉底液遮"} & set(offered)
