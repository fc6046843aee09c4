"""Filter expressions: parsing errors name the field and the limit; keyword values match up to case."""
import pytest

from souk.catalogs import Record
from souk.errors import QueryError
from souk.index import Index
from souk.index.filters import parse_filter, parse_filters
from souk.index.searcher import SearchRequest
from souk.schema import Schema

SCHEMA = Schema.from_dict({"id": "code", "fields": {
    "code": {"kind": "keyword"}, "name": {"kind": "text"}, "grade": {"kind": "keyword"},
    "energy_kcal_100g": {"kind": "number"}, "brand": {"kind": "keyword"}}})
ROWS = [
    {"code": "1", "name": "oat milk", "grade": "a", "energy_kcal_100g": 45, "brand": "Oatly"},
    {"code": "2", "name": "cola", "grade": "e", "energy_kcal_100g": 42, "brand": "Coca-Cola (Zero)"},
    {"code": "3", "name": "chips", "grade": "D", "energy_kcal_100g": 536, "brand": "Lay's"},
    {"code": "4", "name": "water", "grade": "A", "energy_kcal_100g": 0, "brand": "ÉVIAN"},
]


@pytest.fixture(scope="module")
def searcher(tmp_path_factory):
    index = Index.create(tmp_path_factory.mktemp("filters") / "ix", SCHEMA)
    with index.writer() as w:
        w.add([Record(i + 1, r) for i, r in enumerate(ROWS)])
        w.commit()
    return index.searcher()


def codes(searcher, *exprs):
    res = searcher.search(SearchRequest("", k=10, filters=parse_filters(exprs, SCHEMA)))
    return sorted(h.id for h in res.hits)


@pytest.mark.parametrize("expr, message", [
    ("energy_kcal_100g<nan", "'nan' is not a finite number"),
    ("energy_kcal_100g>=inf", "'inf' is not a finite number"),
    ("energy_kcal_100g<-1e999", "'-1e999' is not a finite number"),
    ("energy_kcal_100g=nan..5", "'nan' is not a finite number"),
    ("energy_kcal_100g=..", "needs at least one bound"),
    ("energy_kcal_100g=9..3", "is empty"),
    ("energy-kcal_100g<100", "no filterable field 'energy-kcal_100g' (did you mean energy_kcal_100g?)"),
    ("grde=a", "no filterable field 'grde' (did you mean grade?); filterable: code, grade, energy_kcal_100g, brand"),
    ("name=milk", "'name': it is a text field"),
    ("grade<3", "grade is a keyword field; use = or !="),
    ("grade=a|", "empty value"),
    ("grade=" + "x" * 70_000, "longer than the term limit of 65530 bytes"),
    ("=a", "cannot parse filter"),
])
def test_bad_filters_are_one_line_query_errors(expr, message):
    with pytest.raises(QueryError) as e:
        parse_filter(expr, SCHEMA)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_nonfinite_filter_no_longer_returns_everything(searcher):
    with pytest.raises(QueryError):
        codes(searcher, "energy_kcal_100g<nan")
    assert codes(searcher, "energy_kcal_100g<1e308") == ["1", "2", "3", "4"]
    assert codes(searcher, "energy_kcal_100g=40..50") == ["1", "2"]


def test_keyword_filters_match_regardless_of_case(searcher):
    assert codes(searcher, "grade=A") == ["1", "4"]
    assert codes(searcher, "grade=a") == ["1", "4"]
    assert codes(searcher, "grade!=A") == ["2", "3"]
    assert codes(searcher, "grade=d|E") == ["2", "3"]
    assert codes(searcher, "brand=oatly") == ["1"]
    assert codes(searcher, "brand=coca-cola (zero)") == ["2"]  # regex characters are literal
    assert codes(searcher, "brand=LAY'S") == ["3"]
    assert codes(searcher, "brand=évian") == ["4"]
    assert codes(searcher, "brand=Coca") == []  # whole values only
    assert searcher.filter_keys(parse_filters(["grade=A"], SCHEMA)).size == 2
