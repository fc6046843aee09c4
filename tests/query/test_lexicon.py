import json
from pathlib import Path

import pytest

from souk.errors import DatasetError
from souk.index import Index
from souk.query import lexicon as lexicon_module
from souk.query.lexicon import Lexicon, build_lexicon, lexicon_path, load_lexicon, maximal_tokens, surface_words


@pytest.fixture(scope="module")
def lex(spell_searcher) -> Lexicon:
    return build_lexicon(spell_searcher)


def test_words_have_document_and_collection_frequencies(lex: Lexicon):
    assert lex.docs == 42
    assert lex.df("samsung") == 4 and lex.cf("samsung") == 4
    assert lex.df("chocolate") == 4 and lex.df("fridge") == 4
    assert lex.df("t") == 3 and lex.df("shirt") == 4  # t-shirt is two words, as the analyzer reads it
    assert lex.df("苹果") == 5 and lex.df("手机") == 7 and lex.df("壳") == 3  # jieba reads 手机壳 as 手机|壳
    assert lex.df("不锈钢") == 1 and lex.df("不锈") == 1  # search mode's sub-words count as words
    assert lex.df("nonexistent") == 0


def test_terms_are_the_analyzed_index_terms(lex: Lexicon):
    assert lex.term_df("sunglass") == 3  # stemmed, as the standard analyzer indexes it
    assert "sunglasses" not in lex.terms
    assert lex.known("sunglasses", 3) and lex.known("apples", 2) and not lex.known("sunglases")


def test_bigrams_protected_and_pinyin(lex: Lexicon):
    assert lex.bigram("peanut", "butter") == 3 and lex.bigram("t", "shirt") == 3 and lex.bigram("coca", "cola") == 3
    assert lex.bigram("butter", "peanut") == 0
    assert {"dewalt", "milka", "samsung", "xr500", "20v"} <= lex.protected  # brands and letter+digit tokens
    assert "fridge" not in lex.protected
    assert lex.pinyin["苹果"] == "ping guo" and lex.pinyin["手机"] == "shou ji"
    assert all(w in lex.words for w in lex.pinyin)


def test_cached_per_commit_and_rebuilt_after_a_commit(tmp_path: Path, monkeypatch):
    from souk.catalogs import read_catalog
    from souk.schema import infer_schema
    from support import FIXTURES

    records = list(read_catalog(FIXTURES / "spell_products.jsonl"))
    index = Index.create(tmp_path / "index", infer_schema([r.data for r in records]))
    with index.writer() as writer:
        writer.add(records[:10])
        writer.commit()
    first = index.searcher()
    built = load_lexicon(first)
    path = lexicon_path(index.path, first.commit_id)
    assert path.is_file() and json.loads(path.read_text())["commit_id"] == first.commit_id

    def no_build(*args, **kwargs):
        raise AssertionError("the cached lexicon should have been used")

    monkeypatch.setattr(lexicon_module, "build_lexicon", no_build)
    assert load_lexicon(first).words == built.words
    monkeypatch.undo()

    with index.writer() as writer:
        writer.add(records[10:])
        writer.commit()
    second = index.searcher()
    assert second.commit_id != first.commit_id
    assert load_lexicon(second).docs == 42
    assert sorted(p.name for p in (index.path / "cache").iterdir()) == [
        f"lexicon-{second.commit_id}-bigrams.json", f"lexicon-{second.commit_id}.json"]


def test_query_log_adds_frequencies(lex: Lexicon, tmp_path: Path):
    log = tmp_path / "queries.txt"
    log.write_text("almond milk\nalmond milk latte\n\nfridge\n", encoding="utf-8")
    logged = lex.with_log(log)
    assert logged.log_queries == 3 and logged.log_words["almond"] == 2
    assert logged.bigram("almond", "milk") == 2 and lex.bigram("almond", "milk") == 0
    assert logged.known("almond", 2) and not lex.known("almond")
    with pytest.raises(DatasetError, match="does not exist"):
        lex.with_log(tmp_path / "missing.txt")


def test_surface_words_keep_case_folded_unstemmed_words_and_whole_han_words():
    assert surface_words("The Sunglasses, 不鏽鋼冰箱!") == ["the", "sunglasses", "不锈钢", "冰箱"]
    from souk.analysis.registry import get_analyzer

    tokens = get_analyzer("simple").tokens("不锈钢冰箱")
    assert [t.text for t in maximal_tokens(tokens)] == ["不锈钢", "冰箱"] and len(tokens) == 3


def test_a_cached_lexicon_with_ragged_or_foreign_columns_is_rebuilt(spell_searcher):
    built = load_lexicon(spell_searcher)
    path = lexicon_path(spell_searcher.path, spell_searcher.commit_id)
    cached = json.loads(path.read_text(encoding="utf-8"))
    assert set(cached["words"]) == {"word", "df", "cf"}  # columns, read back a third quicker than objects
    for broken in ({**cached["words"], "df": cached["words"]["df"][:-1]}, {"word": 3, "df": [], "cf": []}, [1, 2]):
        path.write_text(json.dumps({**cached, "words": broken}), encoding="utf-8")
        assert load_lexicon(spell_searcher).words == built.words
