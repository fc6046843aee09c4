import random

import pytest

from souk.errors import DatasetError
from souk.query.synonym_mining import MiningConfig, mine_pairs, sentences


def _corpus(seed: int = 0):
    """A Hong Kong catalog says 朱古力, mainland shoppers type 巧克力; other flavours appear in both."""
    rng = random.Random(seed)
    brands = ["嘉顿", "明治", "乐天", "好丽友", "百力滋", "格力高", "奥利奥", "德芙"]
    flavours = ["草莓", "香草", "抹茶", "芒果", "榛子", "牛奶"]
    products = ["饼干", "蛋糕", "威化", "雪糕", "曲奇", "夹心饼", "蛋卷", "棒"]
    sizes = ["盒装", "袋装", "家庭装", "礼盒", "大包装"]
    titles, queries = [], []
    for _ in range(900):
        flavour = rng.choice(flavours + ["朱古力"] * 2)
        titles.append(f"{rng.choice(brands)} {flavour}{rng.choice(products)} {rng.choice(sizes)}")
    for _ in range(900):
        flavour = rng.choice(flavours + ["巧克力"] * 2)
        queries.append(f"{rng.choice(brands)} {flavour} {rng.choice(products)}" if rng.random() < 0.5
                       else f"{flavour}{rng.choice(products)} {rng.choice(sizes)}")
    return titles, queries


def test_mining_proposes_the_regional_pair():
    titles, queries = _corpus()
    result = mine_pairs(titles, queries, top=5, config=MiningConfig(min_count=3))
    top = [{p.a, p.b} for p in result.pairs]
    assert {"巧克力", "朱古力"} in top[:2], result.pairs
    pair = next(p for p in result.pairs if {p.a, p.b} == {"巧克力", "朱古力"})
    assert pair.together == 0.0 and pair.gap > 0.5 and pair.cosine > 0.5


def test_known_pairs_are_reported_not_proposed():
    titles, queries = _corpus()
    result = mine_pairs(titles, queries, top=5, config=MiningConfig(min_count=3),
                        known={frozenset(("巧克力", "朱古力"))})
    assert ("巧克力", "朱古力") in result.known_found or ("朱古力", "巧克力") in result.known_found
    assert all({p.a, p.b} != {"巧克力", "朱古力"} for p in result.pairs)


def test_sentences_drop_stopwords_numbers_and_single_words():
    assert sentences(["The Fridge 500", "fridge", "冰箱 双门 (白色)"]) == [["冰箱", "双门", "白色"]]
    with pytest.raises(DatasetError):
        mine_pairs(["one"], [])
