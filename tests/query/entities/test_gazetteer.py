import pytest

from souk.errors import ConfigError
from souk.index import Index
from souk.query.entities.gazetteer import Gazetteer


@pytest.fixture(scope="module")
def gazetteer(product_index):
    searcher = Index.open(product_index).searcher()
    return Gazetteer.from_index(searcher, ["brand", "category"], aliases={"嘉顿": "Garden", "日清": "Nissin"})


def spans(gazetteer, text):
    return [(e.type, e.text, e.value) for e in gazetteer.match(text)]


def test_values_of_the_index_fields_become_entries(gazetteer):
    assert {"brand", "category"} == set(gazetteer.types)
    assert spans(gazetteer, "SPIGEN phone accessories") == [
        ("brand", "SPIGEN", "Spigen"), ("category", "phone accessories", "Phone Accessories")]


def test_chinese_aliases_and_traditional_and_full_width_input(gazetteer):
    assert spans(gazetteer, "嘉頓蛋糕 75g") == [("brand", "嘉頓", "Garden")]  # traditional input, simplified alias
    assert spans(gazetteer, "日清杯面") == [("brand", "日清", "Nissin")]
    assert spans(gazetteer, "ＳＰＩＧＥＮ手机壳") == [("brand", "ＳＰＩＧＥＮ", "Spigen")]


def test_spans_index_the_original_text(gazetteer):
    text = "best  Li Ning shoes"
    (brand, category) = gazetteer.match(text)
    assert text[brand.start:brand.end] == brand.text == "Li Ning" and brand.value == "Li-Ning"
    assert category.value == "Shoes" and brand.source == "gazetteer" and brand.score == 1.0


def test_latin_needs_word_boundaries_han_does_not():
    g = Gazetteer.from_values({"brand": ["Apple", "三星"], "type": ["phone case", "phone"]})
    assert spans(g, "pineapple juice") == []
    assert spans(g, "apple-phone case") == [("brand", "apple", "Apple"), ("type", "phone case", "phone case")]
    assert spans(g, "三星手机") == [("brand", "三星", "三星")]
    assert spans(g, "phones") == []


def test_longest_match_and_no_overlap():
    g = Gazetteer.from_values({"brand": ["Nike", "Nike Air"], "type": ["air max", "手机", "手机壳"]})
    assert spans(g, "nike air max") == [("brand", "nike air", "Nike Air")]
    assert spans(g, "手机壳") == [("type", "手机壳", "手机壳")]


def test_short_and_numeric_values_are_skipped():
    g = Gazetteer.from_values({"size": ["M", "42", "XL"]})
    assert len(g) == 1 and spans(g, "size m 42 xl") == [("size", "xl", "XL")]


def test_one_surface_several_types():
    g = Gazetteer.from_values({"brand": ["Garden"], "category": ["garden"]})
    assert spans(g, "garden hose") == [("brand", "garden", "Garden"), ("category", "garden", "garden")]


def test_alias_to_an_unknown_value_is_refused():
    with pytest.raises(ConfigError, match="Coca-Cola"):
        Gazetteer.from_values({"brand": ["Pepsi"]}, aliases={"可口可乐": "Coca-Cola"})


def test_non_keyword_field_is_refused(product_index):
    with pytest.raises(ConfigError, match="keyword"):
        Gazetteer.from_index(Index.open(product_index).searcher(), ["title"])


def test_save_load_round_trip(gazetteer, tmp_path):
    path = gazetteer.save(tmp_path / "gazetteer.json")
    again = Gazetteer.load(path)
    assert len(again) == len(gazetteer)
    for text in ["嘉頓蛋糕", "spigen case", "日清"]:
        assert again.match(text) == gazetteer.match(text)
    (tmp_path / "other.json").write_text('{"kind": "ner-tagger"}')
    with pytest.raises(ConfigError, match="not a souk gazetteer"):
        Gazetteer.load(tmp_path / "other.json")


def test_recognize_prefers_catalog_values_over_tagger_spans(gazetteer):
    from souk.query.entities import Entity, recognize

    class FakeTagger:
        def tag(self, text):
            return [Entity("HPPX", text[0:4], "嘉顿蛋糕", 0, 4, "tagger", 0.9),
                    Entity("HCCX", text[5:7], "礼盒", 5, 7, "tagger", 0.4)]

    found = recognize("嘉頓蛋糕 礼盒", gazetteer, FakeTagger())
    assert [(e.source, e.text) for e in found] == [("gazetteer", "嘉頓"), ("tagger", "礼盒")]
    assert [e.text for e in recognize("嘉頓蛋糕 礼盒", None, FakeTagger(), min_score=0.5)] == ["嘉頓蛋糕"]


def test_default_fields_are_the_keyword_entity_fields(product_index):
    g = Gazetteer.from_index(Index.open(product_index).searcher())
    assert "brand" in g.types and "category" in g.types
