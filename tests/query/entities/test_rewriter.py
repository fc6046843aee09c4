"""The `entities` query step: catalog values and tagger spans in the plan, turned into boosts or filters
that recall obeys."""
import pytest

from souk.errors import ConfigError
from souk.index import Index
from souk.query.entities.rewriter import EntityRewriter
from souk.query.plan import QueryPlan


def plan_of(searcher, text, **options):
    return EntityRewriter(searcher, {"fields": ["brand", "category"], **options}).rewrite(
        QueryPlan(original=text, text=text)
    )


@pytest.fixture(scope="module")
def searcher(product_index):
    return Index.open(product_index).searcher()


def test_entities_are_listed_and_boost_recall(searcher):
    plain = searcher.bm25("anta running shoes", 10, relaxed=True)
    plan = plan_of(searcher, "anta running shoes")
    assert [(e.type, e.value, e.source) for e in plan.entities] == [("brand", "Anta", "gazetteer"),
                                                                    ("category", "Shoes", "gazetteer")]
    assert {(b["field"], b["value"]) for b in plan.boosts} == {("brand", "Anta"), ("category", "Shoes")}
    boosted = searcher.bm25(plan.text, 10, relaxed=True, boosts=plan.boost_filters)
    assert set(plain.ids[:2]) == {"A9", "A10"} and boosted.ids[0] == "A10"  # the Anta shoe first
    assert boosted.scores[0] > plain.scores[list(plain.ids).index("A10")]
    assert not plan.filters


def test_filter_mode_keeps_only_the_recognized_brand(searcher):
    plan = plan_of(searcher, "日清 noodles", use="filter", aliases={"日清": "Nissin"})
    assert [str(f) for f in plan.filters] == ["brand=Nissin", "category=Noodles"]
    assert plan.notes and not plan.boosts
    hits = searcher.bm25("noodles", 10, plan.filters, relaxed=True)
    assert set(hits.ids) == {"A5", "A6"}


def test_none_mode_only_describes(searcher):
    plan = plan_of(searcher, "sony headphones", use="none")
    assert [e.value for e in plan.entities] == ["Sony"] and not plan.boosts and not plan.filters


def test_tagger_entities_only_boost_through_their_mapped_field(searcher):
    from souk.query.plan import Entity

    class FakeTagger:  # a seam: the real tagger has tests of its own (test_tagger.py)
        def tag(self, text):
            return [Entity("HPPX", "vitasoy", "vitasoy", 0, 7, "tagger", 0.9),
                    Entity("HCCX", "milk", "milk", 8, 12, "tagger", 0.9)]

    rewriter = EntityRewriter(searcher, {"fields": ["category"], "use": "filter", "types": {"HPPX": "brand"}})
    rewriter.tagger = FakeTagger()
    plan = rewriter.rewrite(QueryPlan(original="vitasoy milk", text="vitasoy milk"))
    assert not plan.filters  # a guess never filters
    assert plan.boosts == [{"field": "brand", "value": "vitasoy", "weight": 2.0, "source": "tagger"}]
    assert searcher.bm25("milk", 10, relaxed=True, boosts=plan.boost_filters).ids[0] == "A8"  # caseless value


@pytest.mark.parametrize("options, message", [
    ({"use": "always"}, "query.entities.use"), ({"colour": 1}, "query.entities: unknown key .colour."),
    ({"weight": -1}, "query.entities.weight"), ({"types": {"HPPX": "title"}}, "types.HPPX"),
    ({"fields": "brand"}, "query.entities.fields"), ({"aliases": {"x": "Nope"}}, "alias"),
])
def test_bad_options_name_the_key(searcher, options, message):
    with pytest.raises(ConfigError, match=message):
        EntityRewriter(searcher, options)


def test_the_step_runs_in_a_planner(searcher):
    from souk.query.understand import planner_for

    plan = planner_for(searcher, ["syntax", "entities"]).plan("Spigen iphone case")
    assert "entities" in plan.steps and plan.entities[0].value == "Spigen"
