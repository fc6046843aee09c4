import pytest

from souk.errors import ConfigError, QueryError
from souk.index import Index
from souk.index.filters import parse_filters
from souk.index.searcher import SearchRequest


@pytest.fixture(scope="module")
def searcher(product_index):
    return Index.open(product_index).searcher()


def search(searcher, query="", filters=(), **kw):
    return searcher.search(SearchRequest(query, filters=parse_filters(filters, searcher.schema), **kw))


def ids(result):
    return [h.id for h in result.hits]


def test_english_and_chinese_queries(searcher):
    assert ids(search(searcher, "running shoes"))[:2] in (["A9", "A10"], ["A10", "A9"])
    assert ids(search(searcher, "跑步鞋"))[:2] in (["A9", "A10"], ["A10", "A9"])


def test_traditional_query_matches_simplified_and_vice_versa(searcher):
    assert "A4" in ids(search(searcher, "嘉頓"))  # A4's title is simplified
    assert "A3" in ids(search(searcher, "嘉顿蛋糕"))  # A3's title is traditional


def test_keyword_filter_and_alternatives(searcher):
    assert set(ids(search(searcher, "", ["brand=Garden"]))) == {"A3", "A4"}
    assert set(ids(search(searcher, "", ["brand=Garden|Nissin"]))) == {"A3", "A4", "A5", "A6"}
    assert "A3" not in ids(search(searcher, "", ["brand!=Garden"], k=20))


def test_number_ranges(searcher):
    assert set(ids(search(searcher, "", ["price<10"]))) == {"A2", "A5"}
    assert set(ids(search(searcher, "", ["price=10..16"]))) == {"A1", "A3", "A4"}
    assert set(ids(search(searcher, "milk", ["price>=20"]))) == {"A7"}


def test_filters_do_not_change_scores(searcher):
    plain = {h.id: h.score for h in search(searcher, "milk").hits}
    filtered = {h.id: h.score for h in search(searcher, "milk", ["brand=Meiji"]).hits}
    assert filtered == {"A7": pytest.approx(plain["A7"])}


def test_facets_counts_distinct_and_number_stats(searcher):
    res = search(searcher, "", facets=["brand", "price"], k=0)
    assert res.total == 12
    brand = res.facets["brand"]
    assert dict(brand["buckets"])["Garden"] == 2 and brand["distinct"] == 9
    assert res.facets["price"]["min"] == pytest.approx(6.5) and res.facets["price"]["max"] == pytest.approx(1299.0)


def test_sort_and_pagination(searcher):
    asc = ids(search(searcher, "", sort="price", k=3))
    assert asc == ["A5", "A2", "A3"]
    desc = ids(search(searcher, "", sort="-price", k=2, offset=1))
    assert desc == ["A9", "A10"]


def test_highlights_mark_original_text(searcher):
    hit = search(searcher, "shoes").hits[0]
    assert "<mark>Shoes</mark>" in hit.highlights["title"]


def test_bad_requests_have_clear_errors(searcher):
    with pytest.raises(QueryError, match="no filterable field 'colour'"):
        parse_filters(["colour=red"], searcher.schema)
    with pytest.raises(QueryError, match="keyword field; use = or !="):
        parse_filters(["brand<3"], searcher.schema)
    with pytest.raises(QueryError, match="'abc' is not a number"):
        parse_filters(["price<abc"], searcher.schema)
    with pytest.raises(QueryError, match="cannot parse filter"):
        parse_filters(["price"], searcher.schema)
    with pytest.raises(ConfigError, match="no number field 'brand'"):
        search(searcher, "", sort="brand")
    with pytest.raises(QueryError, match="too long"):
        search(searcher, "x" * 5000)


def test_bm25_fast_path_matches_full_search(searcher):
    fast = searcher.bm25("noodles", 10)
    full = search(searcher, "noodles")
    assert fast.ids == ids(full)
    assert list(fast.scores) == pytest.approx([h.score for h in full.hits])


def test_phrase_required_and_excluded_words(searcher):
    assert ids(search(searcher, '"running shoes"')) in (["A9", "A10"], ["A10", "A9"])
    assert search(searcher, '"shoes running"').relaxed  # no exact phrase: plain-word matches, flagged
    assert ids(search(searcher, "running shoes -women")) == ["A9"]
    assert set(ids(search(searcher, "milk +soya"))) == {"A8"}
    assert "A1" not in ids(search(searcher, "-case", k=20)) and search(searcher, "-case", k=20).total == 11
    assert "A12" in ids(search(searcher, "usb-c"))


def test_strict_query_without_matches_is_relaxed(searcher):
    res = search(searcher, '"shoes lightweight running"')
    assert res.relaxed and "A9" in ids(res)
    assert not search(searcher, '"running shoes"').relaxed
    assert searcher.bm25('"shoes lightweight running"', 5).ids[0] == "A9"


def test_hits_for_any_ranking_carry_docs_and_highlights(searcher):
    ranking = searcher.bm25("running shoes", 3)
    hits = searcher.hits(ranking, "running shoes")
    assert [h.id for h in hits] == ranking.ids
    assert all("<mark>" in h.highlights["title"] for h in hits)


# ---- hierarchy facets ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def category_searcher(tmp_path_factory):
    from souk.catalogs import Record
    from souk.schema import Schema

    schema = Schema.from_dict({"id": "id", "fields": {
        "id": {"kind": "keyword"}, "title": {"kind": "text"},
        "cat": {"kind": "keyword", "hierarchy": ">>"}, "zh": {"kind": "keyword", "hierarchy": "|"}}})
    rows = [("p1", "wooden puzzle", '["Toys >> Games >> Puzzles"]', "玩具 | 游戏 | 拼图"),
            ("p2", "jigsaw puzzle", "Toys >> Games >> Puzzles", "玩具 | 游戏 | 拼图"),
            ("p3", "chess set", "Toys >> Games >> Board Games", "玩具 | 游戏 | 棋类"),
            ("p4", "rag doll", "Toys >> Dolls", "玩具 | 娃娃"),
            ("p5", "green tea", "Food >> Tea", "食品 | 茶")]
    index = Index.create(tmp_path_factory.mktemp("cats") / "index", schema)
    with index.writer() as w:
        w.add([Record(i, {"id": a, "title": b, "cat": c, "zh": d}) for i, (a, b, c, d) in enumerate(rows, 1)])
        w.commit()
    return index.searcher()


def test_a_filter_on_any_level_of_a_path_finds_the_documents_below(category_searcher):
    s = category_searcher
    assert set(ids(search(s, "", ["cat=Toys"]))) == {"p1", "p2", "p3", "p4"}
    assert set(ids(search(s, "", ["cat=toys > games"]))) == {"p1", "p2", "p3"}
    assert set(ids(search(s, "", ["cat=Toys >> Games >> Puzzles"]))) == {"p1", "p2"}
    assert set(ids(search(s, "", ["zh=玩具 > 游戏"]))) == {"p1", "p2", "p3"}  # paths are written with '>' in filters
    assert set(ids(search(s, "", ["zh=玩具 > 娃娃|食品"]))) == {"p4", "p5"}  # '|' separates alternatives
    assert set(ids(search(s, "", ["zh=玩具>娃娃"]))) == {"p4"}
    assert search(s, "", ["cat=Games"]).total == 0  # a level is found under its parents only
    assert s.docs(["p1"])[0]["cat"] == ["Toys > Games > Puzzles"]  # stored as the whole path


def test_hierarchy_facets_drill_down_level_by_level(category_searcher):
    s = category_searcher
    top = search(s, "", facets=["cat", "zh"]).facets
    assert dict(top["cat"]["buckets"]) == {"Toys": 4, "Food": 1} and top["cat"]["hierarchy"]["level"] == 1
    assert dict(top["zh"]["buckets"]) == {"玩具": 4, "食品": 1}
    games = search(s, "", ["cat=Toys"], facets=["cat"]).facets["cat"]
    assert dict(games["buckets"]) == {"Toys > Games": 3, "Toys > Dolls": 1}
    assert games["hierarchy"] == {"parent": "Toys", "level": 2, "separator": ">"}
    leaves = search(s, "puzzle", ["cat=toys > games"], facets=["cat"]).facets["cat"]
    assert dict(leaves["buckets"]) == {"Toys > Games > Puzzles": 2}  # over what matches the query
    zh = search(s, "", ["zh=玩具 > 游戏"], facets=["zh"]).facets["zh"]
    assert dict(zh["buckets"]) == {"玩具 > 游戏 > 拼图": 2, "玩具 > 游戏 > 棋类": 1}
    chosen = s.facets_of(["p1", "p4"], ["cat"], filters=parse_filters(["cat=Toys"], s.schema))["cat"]
    assert sorted(chosen["buckets"]) == [("Toys > Dolls", 1), ("Toys > Games", 1)]


def test_synonym_expansions_are_highlighted(searcher):
    hits = search(searcher, "蛋糕", expansions=[("饼干", 0.5, "蛋糕")]).hits
    a4 = next(h for h in hits if h.id == "A4")
    assert "<mark>饼干</mark>" in a4.highlights["title_zh"]
    hits = search(searcher, "cake", expansions=[("biscuits", 0.5, "cake")]).hits
    assert "<mark>Biscuits</mark>" in next(h for h in hits if h.id == "A4").highlights["title"]
