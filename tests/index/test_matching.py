"""The matching strategy: every word counts, relaxing drops the least informative word and says so,
sort and facets see only the matched set, quoted phrases mean adjacent words (Chinese too)."""
from __future__ import annotations

import pytest

from souk.analysis.normalize import normalize
from souk.analysis.registry import get_analyzer
from souk.catalogs import Record
from souk.errors import ConfigError
from souk.index import Index
from souk.index.matching import MatchConfig, drop_order, match_config, required_count, word_spans
from souk.index.searcher import SearchRequest
from souk.schema import Schema

PRODUCTS = [
    ("e1", "Yoga Mat Purple 6mm", "Sports", 30),
    ("e2", "Yoga Block Cork", "Sports", 12),
    ("e3", "Exercise Mat Foam", "Sports", 20),
    ("e4", "Yoga Mat Travel Foldable", "Sports", 45),
    ("e5", "Piano Keyboard with Mat", "Music", 5),
    ("e6", "Jigsaw Puzzle 1000 Pieces for Adults", "Toys", 15),
    ("e7", "Puzzle Box for Kids", "Toys", 8),
    ("e8", "Pirate Costume for Adults", "Toys", 25),
    ("e9", "Chocolate Biscuit Sticks", "Food", 3),
    ("z1", "兰蔻 眼霜 15ml", "Beauty", 500),
    ("z2", "兰蔻 小黑瓶 精华 眼霜 套装", "Beauty", 900),
    ("z3", "完美日记 口红 花 限定", "Beauty", 1),
    ("z4", "雅诗兰黛 面霜", "Beauty", 300),
    ("z5", "欧莱雅 面霜", "Beauty", 100),
    ("z6", "粉底液 遮瑕 持久", "Beauty", 200),
    ("z7", "夜精华 修护", "Beauty", 50),
    ("z8", "SK-II 面霜 50g", "Beauty", 900),
    ("z9", "兰蔻 面霜", "Beauty", 700),
]


def build(tmp_path, name: str, query: dict | None = None) -> Index:
    schema = Schema.from_dict({"id": "id", "fields": {
        "id": {"kind": "keyword"}, "title": {"kind": "text", "boost": 2.0}, "category": {"kind": "keyword"},
        "price": {"kind": "number"}}, "query": query or {}})
    index = Index.create(tmp_path / name, schema)
    with index.writer() as w:
        w.add([Record(i, {"id": d, "title": t, "category": c, "price": p})
               for i, (d, t, c, p) in enumerate(PRODUCTS, 1)])
        w.commit()
    return index


@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    """The defaults: relax only when nothing holds every word (`relax_below = 1`)."""
    return build(tmp_path_factory.mktemp("match"), "strict").searcher()


@pytest.fixture(scope="module")
def default(tmp_path_factory):
    """Relax when fewer than 10 products hold every word."""
    return build(tmp_path_factory.mktemp("match"), "default", {"relax_below": 10}).searcher()


def ids(result):
    return [h.id for h in result.hits]


def test_minimum_should_match_follows_elasticsearch():
    assert [required_count("-1", n) for n in range(1, 6)] == [1, 1, 2, 3, 4]
    assert [required_count("3<75%", n) for n in range(1, 9)] == [1, 2, 3, 3, 3, 4, 5, 6]
    assert [required_count("100%", n) for n in (1, 4)] == [1, 4]
    assert required_count("2", 5) == 2 and required_count("-25%", 4) == 3 and required_count("1", 0) == 0
    with pytest.raises(ValueError, match="cannot read"):
        required_count("most", 3)


def test_words_are_typed_words_and_lone_han_characters_stay_with_their_neighbour():
    analyzer = get_analyzer("standard")

    def words(text):
        norm = normalize(text)
        return [norm[a:b] for a, b in word_spans(norm, analyzer.tokens(text))]

    assert words("花西子") == ["花西子"]  # never 花 alone
    assert words("粉底液遮瑕") == ["粉底液", "遮瑕"]
    assert words("阿玛尼粉底液") == ["阿玛尼", "粉底液"]
    assert words("usb-c cable for adults") == ["usb-c", "cable", "adults"]  # stopwords carry no terms
    assert words("sk2 面霜") == ["sk2", "面霜"]


def test_drop_order_unknown_words_first_then_most_common():
    assert drop_order([5, 0, 100, 100]) == [1, 3, 2, 0]


def test_config_keys_are_checked():
    assert match_config({}) == MatchConfig("relax", "-1", 1)
    for table, key in [({"match": "most"}, "query.match"), ({"relax_below": 0}, "query.relax_below"),
                       ({"minimum_should_match": "lots"}, "query.minimum_should_match"),
                       ({"minimum_should_match": True}, "query.minimum_should_match")]:
        with pytest.raises(ConfigError, match=key):
            match_config(table)


def test_config_is_checked_when_the_index_opens(tmp_path):
    from souk.config import check_config

    schema = Schema.from_dict({"id": "id", "fields": {"id": {"kind": "keyword"}, "title": {"kind": "text"}},
                               "query": {"match": "every"}})
    with pytest.raises(ConfigError, match="query.match"):
        check_config(schema)
    ok = Schema.from_dict({"id": "id", "fields": {"id": {"kind": "keyword"}, "title": {"kind": "text"}},
                           "query": {"match": "all", "minimum_should_match": "3<75%", "relax_below": 5}})
    assert check_config(ok) is ok


def test_every_word_must_match_and_sort_keeps_only_full_matches(strict):
    res = strict.search(SearchRequest("yoga mat", sort="price"))
    assert ids(res) == ["e1", "e4"] and res.total == 2 and not res.relaxed and res.dropped == []
    res = strict.search(SearchRequest("兰蔻 面霜", sort="price"))
    assert ids(res) == ["z9"] and not res.relaxed  # not the cheaper creams of other brands


def test_facets_count_the_matched_set(strict):
    res = strict.search(SearchRequest("mat", facets=["category"], k=0))
    assert dict(res.facets["category"]["buckets"]) == {"Sports": 3, "Music": 1}
    res = strict.search(SearchRequest("yoga mat", facets=["category"], k=0))
    assert dict(res.facets["category"]["buckets"]) == {"Sports": 2}


def test_any_keeps_bm25_over_any_word(strict):
    res = strict.search(SearchRequest("yoga mat", match="any", k=20))
    assert res.total == 5 and {"e2", "e3", "e5"} <= set(ids(res))


def test_all_never_relaxes(tmp_path):
    searcher = build(tmp_path, "all", {"match": "all"}).searcher()
    res = searcher.search(SearchRequest("yoga piano"))
    assert res.total == 0 and not res.relaxed


def test_relaxing_drops_the_least_informative_word_and_says_so(strict):
    res = strict.search(SearchRequest("yoga keyboard exercise"))  # "-1": at most one word of three may go
    assert res.relaxed and res.total == res.partial > 0  # none holds two: a long query shows partial matches, flagged
    # sorted: the matched set only
    assert strict.search(SearchRequest("yoga keyboard exercise", sort="price")).total == 0
    res = strict.search(SearchRequest("puzzle adults"))
    assert ids(res) == ["e6"] and not res.relaxed
    res = strict.search(SearchRequest("puzzle grownups"))  # a word no product holds goes first
    assert res.relaxed and res.dropped == ["grownups"] and set(ids(res)) == {"e6", "e7"}
    assert res.to_dict()["dropped"] == ["grownups"]


def test_relaxing_skips_a_drop_that_finds_nothing_more(strict):
    res = strict.search(SearchRequest("yoga mat piano"))  # mat is commonest, but yoga + piano finds nothing
    assert res.dropped == ["yoga"] and ids(res)[0] == "e5" and res.partial == res.total - 1
    assert ids(strict.search(SearchRequest("yoga mat piano", sort="price"))) == ["e5"]


def test_minimum_should_match_bounds_relaxing(tmp_path):
    searcher = build(tmp_path, "loose", {"relax_below": 1, "minimum_should_match": "1"}).searcher()
    res = searcher.search(SearchRequest("yoga keyboard exercise"))
    assert res.dropped == ["yoga", "exercise"] and ids(res)[0] == "e5"  # commonest first, then the later of equals
    assert res.partial == res.total - 1  # then the partial matches of a long query


def test_a_relaxed_sort_puts_full_matches_first(default):
    res = default.search(SearchRequest("yoga mat", sort="price", k=10))
    assert res.relaxed and res.dropped == ["mat"]  # 2 products hold both: fewer than relax_below (10)
    assert ids(res)[:2] == ["e1", "e4"] and ids(res)[2:] == ["e2"]  # then the other yoga product, by price
    page2 = default.search(SearchRequest("yoga mat", sort="price", k=2, offset=1))
    assert ids(page2) == ["e4", "e2"]


def test_a_missing_brand_never_matches_by_one_character(strict):
    res = strict.search(SearchRequest("花西子"))
    assert res.total == 0 and res.hits == []  # 完美日记 口红 花 限定 holds 花 only
    assert strict.search(SearchRequest("花西子", match="any")).total == 1  # what `any` would have shown


def test_quoted_chinese_phrase_means_adjacent_words(strict):
    plain = strict.search(SearchRequest("兰蔻 眼霜"))
    quoted = strict.search(SearchRequest('"兰蔻 眼霜"'))
    assert set(ids(plain)) == {"z1", "z2"}
    assert ids(quoted) == ["z1"] and not quoted.relaxed


def test_a_synonym_counts_as_the_word(strict):
    plain = strict.search(SearchRequest("cocoa biscuit"))
    assert plain.total == 0 or plain.relaxed
    res = strict.search(SearchRequest("cocoa biscuit", expansions=[("chocolate", 0.5, "cocoa")]))
    assert ids(res) == ["e9"] and not res.relaxed


def test_bm25_tiers_full_matches_first_then_the_rest(default):
    ranking = default.bm25("yoga mat", 10, match=None)
    assert ranking.ids[:2] in (["e1", "e4"], ["e4", "e1"])
    assert set(ranking.ids[2:]) == {"e2", "e3", "e5"}  # still candidates, below every full match
    assert list(ranking.scores) == sorted(ranking.scores, reverse=True)
    assert set(default.bm25("yoga mat", 10).ids) == {"e1", "e2", "e3", "e4", "e5"}  # any: BM25 order
    full = default.search(SearchRequest("yoga mat", k=3))
    assert ids(full) == ranking.ids[:3]


def test_proximity_bonus_prefers_words_together(strict):
    res = strict.search(SearchRequest("yoga mat", k=2))
    assert res.hits[0].score > strict.search(SearchRequest("yoga mat", k=2, match="any")).hits[0].score


MIXED = [("m1", "Huawei Mate40Pro phone case"), ("m2", "Huawei Mate 40 Pro screen protector"),
         ("m3", "iPhone12 silicone case"), ("m4", "iPhone 12 leather case"), ("m5", "Mate 20 phone case"),
         ("m6", "华为mate40pro手机壳")]


def mixed_index(tmp_path, analysis: dict | None = None) -> Index:
    schema = Schema.from_dict({"id": "id", "fields": {"id": {"kind": "keyword"}, "title": {"kind": "text"}},
                               **({"analysis": analysis} if analysis is not None else {})})
    index = Index.create(tmp_path / "mixed", schema)
    with index.writer() as w:
        w.add([Record(i, {"id": d, "title": t}) for i, (d, t) in enumerate(MIXED, 1)])
        w.commit()
    return index


def test_a_word_mixing_letters_and_digits_matches_its_parts_and_back(tmp_path):
    index = mixed_index(tmp_path)
    assert index.schema.analysis["word_parts"] is True  # on for a new index, kept in its manifest
    s = Index.open(index.path).searcher()
    assert set(ids(s.search(SearchRequest("iphone 12 case", match="all")))) == {"m3", "m4"}
    assert set(ids(s.search(SearchRequest("iphone12 case", match="all")))) == {"m3", "m4"}
    assert set(ids(s.search(SearchRequest("mate40pro", match="all")))) == {"m1", "m2", "m6"}
    assert ids(s.search(SearchRequest("mate40pro case", match="all")))[0] == "m1"  # the whole word scores too
    assert set(ids(s.search(SearchRequest('"mate40pro phone"')))) == {"m1"}  # a phrase by its parts
    assert set(ids(s.search(SearchRequest('"mate 40 pro screen"')))) == {"m2"}
    assert set(ids(s.search(SearchRequest('"silicone case"')))) == {"m3"}  # (iphone12's whole breaks no phrase)
    assert set(ids(s.search(SearchRequest('"huawei mate40pro phone"')))) == {"m1"}
    assert set(s.bm25("mate40pro", 10, match=None).ids[:3]) == {"m1", "m2", "m6"}  # (then mate 20: the rest)
    assert set(s.bm25("mate40pro", 10).ids) >= {"m1", "m2", "m6"}  # the impacts path reads the same terms
    res = s.search(SearchRequest("apple 12 case", match="all", expansions=[("iphone12", 0.5, "apple")]))
    assert set(ids(res)) == {"m3", "m4"} and not res.relaxed  # a synonym holds by its parts too
    code = s.search(SearchRequest("mate40pro"))  # one typed word, not a long query: no partial match (mate 20) follows
    assert set(ids(code)) == {"m1", "m2", "m6"} and not code.relaxed and code.partial == 0
    hit = s.search(SearchRequest("mate 40 pro", match="all", k=10)).hits
    assert "<mark>40</mark>" in next(h for h in hit if h.id == "m1").highlights["title"]


def test_an_index_without_word_parts_keeps_its_terms(tmp_path):
    s = mixed_index(tmp_path, {"word_parts": False}).searcher()
    assert set(ids(s.search(SearchRequest("iphone12 case", match="all")))) == {"m3"}
    with pytest.raises(ConfigError, match="word_parts"):
        Schema.from_dict({"id": "id", "fields": {"id": {"kind": "keyword"}}, "analysis": {"word_parts": "yes"}})
