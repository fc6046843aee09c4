"""The one write path: open-or-create, chunked commits, discard on failure, write_batch, the on_error check."""
from __future__ import annotations

import json

import pytest

from support import FIXTURES
from souk.errors import ConfigError, DocumentError
from souk.index import Index
from souk.indexing import check_on_error, index_records, open_or_create, write_batch

SCHEMA = 'id = "sku"\n[fields.sku]\nkind = "keyword"\n[fields.title]\nkind = "text"\n[fields.price]\nkind = "number"\n'


def _catalog(tmp_path, records, name="cat.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _schema(tmp_path):
    path = tmp_path / "schema.toml"
    path.write_text(SCHEMA)
    return path


def test_chunks_commit_one_by_one_and_count_replaced_records(tmp_path):
    records = [{"sku": str(i), "title": f"item {i}", "price": i} for i in range(5)] + [{"sku": "0", "title": "again"}]
    opened = open_or_create(_catalog(tmp_path, records), tmp_path / "ix", _schema(tmp_path), vectors=False)
    run = index_records(opened, commit_every=2)
    assert opened.created and run.commits == 3 and run.docs == 5 and run.report.written == 6
    assert any("1 of 6 records had the id of an earlier record" in w for w in run.warnings)
    again = index_records(open_or_create(_catalog(tmp_path, records[:2], "more.jsonl"), tmp_path / "ix", None, False))
    assert again.docs_before == 5 and again.docs == 5 and again.commits == 1


def test_a_failed_first_run_leaves_nothing_and_a_failed_later_run_keeps_the_index(tmp_path):
    bad = [{"sku": "1", "title": "ok", "price": 1}, {"sku": "2", "title": "x", "price": "cheap"}]
    opened = open_or_create(_catalog(tmp_path, bad), tmp_path / "ix", _schema(tmp_path), vectors=False)
    with pytest.raises(DocumentError, match="line 2: price"):
        index_records(opened)
    assert not (tmp_path / "ix").exists()
    index_records(open_or_create(FIXTURES / "products.jsonl", tmp_path / "shop", None, vectors=False))
    docs = Index.open(tmp_path / "shop").searcher().num_docs
    later = open_or_create(_catalog(tmp_path, [{"sku": "Z9", "price": "cheap"}]), tmp_path / "shop", None, False)
    with pytest.raises(DocumentError):
        index_records(later)
    assert Index.open(tmp_path / "shop").searcher().num_docs == docs  # the last commit stands


def test_write_batch_upserts_and_deletes_in_one_commit(tmp_path):
    index = open_or_create(FIXTURES / "products.jsonl", tmp_path / "shop", None, vectors=False)
    index_records(index)
    ix = Index.open(tmp_path / "shop")
    before = ix.searcher().num_docs
    done = write_batch(ix, [{"sku": "N1", "title": "new"}, "not an object"], on_error="skip",
                       delete=["A1", "A1", "nope"])
    assert done["written"] == 1 and done["deleted"] == 1 and done["docs"] == before
    assert done["rejected"] == [{"record": 2, "field": "", "message": "expected a JSON object"}]
    with pytest.raises(DocumentError):
        write_batch(ix, [{"sku": "N2", "title": "x"}, {"title": "no id"}], delete=["A2"])
    assert ix.searcher().docs(["N2", "A2"])[0] is None and ix.searcher().docs(["A2"])[0] is not None


def test_on_error_is_checked_once_with_the_name_the_caller_uses(tmp_path):
    assert check_on_error("skip") == "skip"
    with pytest.raises(ConfigError, match="--on-error must be 'fail' or 'skip', not 'ignore'"):
        check_on_error("ignore", "--on-error")
    index_records(open_or_create(FIXTURES / "products.jsonl", tmp_path / "shop", None, vectors=False))
    with pytest.raises(ConfigError, match="on_error must be"):
        write_batch(Index.open(tmp_path / "shop"), [{"sku": "N1"}], on_error="sometimes")
    with pytest.raises(ConfigError, match="commit_every must be"):
        index_records(open_or_create(FIXTURES / "products.jsonl", tmp_path / "shop", None, False), commit_every=-1)
