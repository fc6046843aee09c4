import dataclasses

import pytest

from souk.query.spell import Correction, SpellConfig, Speller, correction_hits, decide
from support import DATA, needs_shared


@pytest.mark.parametrize("typed, expected, kind", [
    ("samsng fridge", "samsung fridge", "spelling"),
    ("dewalt 20v drll", "dewalt 20v drill", "spelling"),
    ("choclate", "chocolate", "spelling"),
    ("sunglases", "sunglasses", "spelling"),
    ("peanut buter", "peanut butter", "spelling"),
    ("cocacola", "coca cola", "split"),
    ("tshirt", "t shirt", "split"),
    ("almond milk", "almondmilk", "join"),
    ("平果手机", "苹果手机", "homophone"),
    ("pingguo shouji", "苹果手机", "pinyin"),
    ("pg", "苹果", "initials"),
])
def test_shopper_typos_are_corrected(speller: Speller, typed: str, expected: str, kind: str):
    c = speller.correct(typed)
    assert c.changed and c.corrected == expected, c
    assert [e.kind for e in c.edits] == [kind]
    assert c.candidates[0] == (expected, pytest.approx(c.candidates[0][1]))
    assert typed.lower() in [t for t, _ in c.candidates]  # the query as typed stays a candidate
    assert sum(p for _, p in c.candidates) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("query", [
    "samsung fridge", "peanut butter", "苹果手机", "coca cola 500ml", "dewalt xr500", "almondmilk",
    "iphone15 手機殼",  # a model number and traditional characters: normalization already reads 手机壳
])
def test_correct_queries_are_left_alone(speller: Speller, query: str):
    c = speller.correct(query)
    assert not c.changed and c.corrected == query and c.edits == [], c


def test_numbers_units_and_model_numbers_are_untouched(speller: Speller):
    for typed, expected in [("choclate 70%", "chocolate 70%"), ("dewalt xr500 drll", "dewalt xr500 drill"),
                            ("bosch 3/4 in drll", "bosch 3/4 in drill"), ("sunglases 2 pack", "sunglasses 2 pack")]:
        c = speller.correct(typed)
        assert c.corrected == expected and all(e.original in typed.split() for e in c.edits), c
    assert not speller.correct("500ml 2kg 20v 70% 3/4 in").changed


def test_brands_are_protected(speller: Speller):
    # "milka" is a brand only in the keyword field: unknown to the text, one letter from "milk"
    assert not speller.correct("milka chocolate").changed
    unprotected = dataclasses.replace(speller.lexicon, protected=speller.lexicon.protected - {"milka"})
    assert Speller(unprotected).correct("milka chocolate").corrected == "milk chocolate"


def test_initials_need_one_dominant_word(speller: Speller):
    strict = Speller(speller.lexicon, SpellConfig(initials_dominance=0.95))  # 排骨 shares "pg" with 苹果
    assert not strict.correct("pg").changed


def test_edits_point_into_the_normalized_query(speller: Speller):
    c = speller.correct("Peanut Buter 340g")
    (edit,) = c.edits
    assert (edit.original, edit.replacement, edit.start, edit.end) == ("buter", "butter", 7, 12)
    assert c.corrected == "peanut butter 340g"
    assert c.to_dict()["edits"][0]["kind"] == "spelling"


def test_empty_and_symbol_queries(speller: Speller):
    assert speller.correct("") == Correction("", "", False, [("", 1.0)])
    assert not speller.correct("!!! ---").changed


def test_decide_policy():
    assert decide(0, 12) == "rewrite"
    assert decide(0, 1) == "rewrite"  # train-tuned default: one document matching every word is enough
    assert decide(0, 1, plenty=5) == "suggest"
    assert decide(40, 12) == "suggest"
    assert decide(3, 0) == "none" and decide(0, 0) == "none"
    assert decide(2, 10, few=2, plenty=5) == "rewrite"
    with pytest.raises(ValueError):
        decide(0, 1, few=5, plenty=5)


def test_correction_hits_count_documents_matching_every_word(speller: Speller, spell_searcher):
    c = speller.correct("samsng fridge")
    assert correction_hits(spell_searcher, speller.lexicon, c) == (0, 3)
    assert decide(*correction_hits(spell_searcher, speller.lexicon, c)) == "rewrite"
    # a word unknown to the index that both share is left out of both counts
    c = speller.correct("wireless samsng fridge")
    assert c.corrected == "wireless samsung fridge"
    assert correction_hits(spell_searcher, speller.lexicon, c) == (0, 3)


def test_bilingual_demo_catalog(demo_index):
    from souk.index import Index
    from souk.query.lexicon import load_lexicon

    speller = Speller(load_lexicon(Index.open(demo_index).searcher()))
    for typed, expected in [("choclate biscuits", "chocolate biscuits"), ("nisin cup noodles", "nissin cup noodles"),
                            ("oister sauce", "oyster sauce"), ("可口可了", "可口可乐"), ("家顿蛋糕", "嘉顿蛋糕"),
                            ("xifashui", "洗发水"), ("mianbao", "面包"), ("cocacola", "coca cola")]:
        assert speller.correct(typed).corrected == expected, typed
    for query in ["lee kum kee", "嘉頓 蛋糕", "garden 75g cake", "面包", "coca cola 330ml"]:
        assert not speller.correct(query).changed, query


@needs_shared("data", "homedepot")
def test_real_shopper_typos_on_homedepot(tmp_path):
    """A quarter of the real catalog (every 4th product) against real typos from its query log."""
    from itertools import islice

    from souk.catalogs import read_catalog
    from souk.index import Index
    from souk.query.lexicon import load_lexicon
    from souk.schema import beir_schema

    index = Index.create(tmp_path / "index", beir_schema())
    with index.writer() as writer:
        writer.add(islice(read_catalog(DATA / "homedepot"), 0, None, 4))
        writer.commit()
    speller = Speller(load_lexicon(index.searcher()))
    fixed = {"10 flourescent bulbs": "10 fluorescent bulbs", "hose to presure washer": "hose to pressure washer",
             "milwakee m12 cordless heated jacket": "milwaukee m12 cordless heated jacket",
             "12000 btuair conditioners window": "12000 btu air conditioners window",
             "countertop soap dispensor": "countertop soap dispenser", "curtin rods": "curtain rods"}
    assert {q: speller.correct(q).corrected for q in fixed} == fixed
    for query in ["mdf 3/4", "honda mower", "briggs and stratton lawn mower", "t25 torx", "10x30x1 hepa filter"]:
        assert not speller.correct(query).changed, query


def test_a_rewrite_never_pushes_a_valid_query_over_the_length_limit(spell_searcher):
    """The query-length limit applies to what the user typed: a correction that would make the searched
    text longer than the limit is not applied (a 1000-character query stays searchable)."""
    from types import SimpleNamespace

    from souk.index.searcher import MAX_QUERY_CHARS
    from souk.query.plan import QueryPlan, parse_query
    from souk.query.spell import SpellRewriter

    step = SpellRewriter(spell_searcher, {})
    lexicon = step.lexicon
    longer = SimpleNamespace(changed=True, corrected="x" * (MAX_QUERY_CHARS + 1))
    step._source = SimpleNamespace(get=lambda searcher: (lexicon, SimpleNamespace(correct=lambda text: longer)))
    typed = "y" * MAX_QUERY_CHARS
    plan = QueryPlan(original=typed, text=typed, normalized=typed)
    plan.syntax = parse_query(typed)
    assert step.rewrite(plan).text == typed and not plan.corrections


@pytest.mark.parametrize("query", [
    "samsung fridge", "peanut butter", "almond milk", "dewalt xr500", "coca cola 500ml", "the fridge", "a b",
    "samsng fridge", "pingguo shouji", "pg", "chain saw", "fridge fridge", "苹果手机",
])
def test_the_typed_shortcut_answers_as_the_full_lattice(speller: Speller, query: str, monkeypatch):
    quick = speller.correct(query)
    monkeypatch.setattr(Speller, "_as_typed", lambda self, tokens: False)
    assert speller.correct(query) == quick


def test_a_query_of_trusted_words_never_reads_the_bigrams(spell_searcher):
    from souk.query.lexicon import bigrams_path, load_lexicon

    load_lexicon(spell_searcher)  # the cache
    lexicon = load_lexicon(spell_searcher)
    speller = Speller(lexicon)
    assert not speller.correct("samsung fridge").changed
    assert lexicon.bigrams._data is None  # type: ignore[attr-defined]
    assert speller.correct("almond milk").corrected == "almondmilk"  # a join reads them
    assert lexicon.bigrams._data  # type: ignore[attr-defined]
    bigrams_path(spell_searcher.path, spell_searcher.commit_id).write_text("[1, 2", encoding="utf-8")
    broken = Speller(load_lexicon(spell_searcher))  # a corrupt bigram file is rebuilt, never an empty model
    assert broken.correct("almond milk").corrected == "almondmilk"
    assert len(broken.lexicon.bigrams) == len(lexicon.bigrams)


def test_the_spell_step_builds_its_tables_at_once_unless_a_one_shot_process_asks(spell_searcher, monkeypatch):
    from souk.query import spell

    monkeypatch.setattr(spell, "_EAGER", [True])  # (as a new process starts; restored after the test)
    eager = spell.SpellRewriter(spell_searcher, {"plenty": 2}).speller
    assert {"_context", "_by_length", "_pinyin"} <= set(vars(eager))  # a server's requests never wait
    spell.tables_on_first_use()
    lazy = spell.SpellRewriter(spell_searcher, {"plenty": 3}).speller
    assert not {"_context", "_by_length", "_pinyin"} & set(vars(lazy))
    assert lazy.correct("samsng fridge").corrected == "samsung fridge" and "_by_length" in vars(lazy)
