"""An index's own word list (`souk.index.words`): re-analysis in one commit, versioned and checked on open."""
from __future__ import annotations

import json

import pytest

from souk.errors import IndexStateError
from souk.index import Index
from souk.index.words import reanalyze
from souk.indexing import add_words
from zh_mini import build_index


def _terms(index_path, text: str) -> list[str]:
    from souk.analysis.registry import get_analyzer

    index = Index.open(index_path)
    return get_analyzer("standard", index.schema.analysis.get("user_dict")).terms(text)


def test_new_words_become_terms_of_documents_and_queries(tmp_path):
    path = tmp_path / "index"
    build_index(path)
    before = Index.open(path).searcher().num_docs
    assert "感冒咳嗽" not in _terms(path, "感冒咳嗽")
    done = add_words(path, ["感冒咳嗽"])
    assert done == {"version": 1, "words": 1, "docs": before, "file": "analysis/words-1.txt"}
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["words"]["version"] == 1 and manifest["words"]["count"] == 1
    assert "感冒咳嗽" in _terms(path, "小孩感冒咳嗽")
    searcher = Index.open(path).searcher()
    assert searcher.num_docs == before and searcher.bm25("感冒咳嗽", 5).ids[0] == "d0"
    # a second list keeps the first's words, as a new version
    assert add_words(path, ["快速退烧"])["version"] == 2
    assert {"感冒咳嗽", "快速退烧"} <= set(_terms(path, "感冒咳嗽 快速退烧"))


def test_an_altered_word_list_is_refused_on_open(tmp_path):
    path = tmp_path / "index"
    build_index(path)
    add_words(path, ["感冒咳嗽"])
    (path / "analysis" / "words-1.txt").write_text("感冒咳嗽 999999\n")
    with pytest.raises(IndexStateError, match="changed after it was indexed") as e:
        Index.open(path)
    assert "感冒咳嗽" not in str(e.value)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["words"]["file"] = "../manifest.json"
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexStateError, match="must name analysis/words"):
        Index.open(path)


def test_a_failed_reanalysis_leaves_the_index_as_it_was(tmp_path, monkeypatch):
    from souk.index import writer

    path = tmp_path / "index"
    build_index(path)
    manifest = (path / "manifest.json").read_text()

    def boom(self, **kw):
        raise RuntimeError("disk full")

    monkeypatch.setattr(writer.Writer, "commit", boom)
    with pytest.raises(RuntimeError):
        reanalyze(path, "感冒咳嗽\n", 1)
    assert (path / "manifest.json").read_text() == manifest
    assert not list((path / "analysis").glob("words-*"))
    monkeypatch.undo()
    assert "感冒咳嗽" not in _terms(path, "感冒咳嗽") and Index.open(path).searcher().num_docs == 50


def test_a_schema_user_dictionary_is_copied_into_the_index_which_then_moves_without_it(tmp_path):
    import shutil

    from souk.catalogs import read_catalog
    from souk.schema import Schema

    shop = tmp_path / "shop"
    shop.mkdir()
    (shop / "dict.txt").write_text("感冒咳嗽 100\n", encoding="utf-8")
    schema = (f'id = "_id"\n[analysis]\nuser_dict = "{shop / "dict.txt"}"\n'
              '[fields._id]\nkind = "keyword"\n[fields.text]\nkind = "text"\n')
    (shop / "schema.toml").write_text(schema, encoding="utf-8")
    docs = [{"_id": "d0", "text": "小孩感冒咳嗽吃什么药好"}, {"_id": "d1", "text": "儿童发烧怎么办"}]
    (shop / "catalog.jsonl").write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs),
                                        encoding="utf-8")
    path = tmp_path / "index"
    index = Index.create(path, Schema.load(shop / "schema.toml"))
    with index.writer() as writer:
        writer.add(read_catalog(shop / "catalog.jsonl"))
        writer.commit()
    entry = json.loads((path / "manifest.json").read_text())["words"]
    assert entry["version"] == 1 and entry["count"] == 1 and entry["source"] == "schema user_dict"
    shutil.rmtree(shop)  # the index goes to another machine; the shop's file stays behind
    moved = tmp_path / "deployed" / "index"
    shutil.move(str(path), str(moved))
    assert "感冒咳嗽" in _terms(moved, "感冒咳嗽") and Index.open(moved).searcher().bm25("感冒咳嗽", 5).ids == ["d0"]
    assert add_words(moved, ["快速退烧"])["version"] == 2  # mined words add to the shop's, as a new version
    assert {"感冒咳嗽", "快速退烧"} <= set(_terms(moved, "感冒咳嗽 快速退烧"))
    # a first run that fails leaves nothing behind, the copied dictionary included
    again = Index.create(tmp_path / "second" / "index", Index.open(moved).schema)
    assert (again.path / "analysis").is_dir()
    again.discard()
    assert not (tmp_path / "second").exists()
