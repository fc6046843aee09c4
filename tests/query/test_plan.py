"""The query plan through the configured steps: spelling rewrites or suggests, and says so."""
from souk.engine import Engine
from souk.index import Index
from souk.ranking.pipeline import build_pipeline


def test_spell_step_rewrites_a_query_that_finds_nothing(spell_index):
    searcher = Index.open(spell_index).searcher()
    pipe = build_pipeline("bm25", searcher, {"query": ["syntax", "spell"]})
    plan = pipe.plan("choclate")
    assert plan.text == "chocolate" and plan.corrections[0]["decision"] == "rewrite"
    assert plan.steps == ["syntax", "spell"] and "showing results for" in plan.notes[0]
    assert build_pipeline("bm25", searcher).plan("choclate").text == "choclate", "steps follow the config"


def test_operators_are_never_corrected(spell_index):
    pipe = build_pipeline("bm25", Index.open(spell_index).searcher(), {"query": ["syntax", "spell"]})
    assert pipe.plan('"choclate"').text == '"choclate"'


def test_engine_explain_shows_the_plan(spell_index):
    result = Engine.open(spell_index).search("choclate", pipeline="bm25", explain=True)
    assert result.plan["original"] == "choclate" and result.plan["text"] == "choclate"
