import pytest

from souk.catalogs import Record
from souk.errors import DocumentError, IndexStateError
from souk.index import Index
from souk.schema import Schema

SCHEMA = {"id": "sku", "fields": {"sku": {"kind": "keyword"}, "title": {"kind": "text"}, "price": {"kind": "number"}}}


def recs(*rows):
    return [Record(i + 1, r) for i, r in enumerate(rows)]


@pytest.fixture
def index(tmp_path):
    return Index.create(tmp_path / "ix", Schema.from_dict(SCHEMA))


def titles(index, query):
    from souk.index.searcher import SearchRequest

    return sorted(h.doc["title"] for h in index.searcher().search(SearchRequest(query, k=10)).hits)


def test_nothing_visible_before_commit(index):
    with index.writer() as w:
        w.add(recs({"sku": "1", "title": "red shoe"}))
        assert index.searcher().num_docs == 0
        w.commit()
    assert index.searcher().num_docs == 1


def test_update_by_id_replaces(index):
    with index.writer() as w:
        w.add(recs({"sku": "1", "title": "red shoe"}, {"sku": "2", "title": "blue shoe"}))
        w.commit()
        w.add(recs({"sku": "1", "title": "green shoe"}))
        w.commit()
    assert index.searcher().num_docs == 2
    assert titles(index, "shoe") == ["blue shoe", "green shoe"]


def test_delete(index):
    with index.writer() as w:
        w.add(recs({"sku": "1", "title": "red shoe"}, {"sku": "2", "title": "blue shoe"}))
        w.commit()
        w.delete(["1", "nope"])
        w.commit()
    assert titles(index, "shoe") == ["blue shoe"]


def test_on_error_fail_commits_nothing_and_names_every_problem(index):
    bad = recs({"sku": "1", "title": "ok"}, {"title": "no id"}, {"sku": "3", "price": "cheap"},
               {"sku": "4", "title": "ok too"})
    bad.append(Record(5, None, "invalid UTF-8"))
    with index.writer() as w:
        with pytest.raises(DocumentError) as e:
            w.add(bad, on_error="fail")
        w.commit()
    msg = str(e.value)
    assert (
        "line 2: sku: missing id" in msg
        and "line 3: price: expected a number" in msg
        and "line 5: invalid UTF-8" in msg
    )
    assert "nothing from this batch was committed" in msg
    assert index.searcher().num_docs == 0


def test_on_error_skip_keeps_the_rest(index):
    with index.writer() as w:
        report = w.add(recs({"sku": "1", "title": "ok"}, {"title": "no id"}), on_error="skip")
        w.commit()
    assert report.written == 1 and report.rejected[0][:2] == (2, "sku")
    assert index.searcher().num_docs == 1


def test_second_writer_is_refused(index):
    with index.writer():
        with pytest.raises(IndexStateError, match="another"):
            index.writer()


def test_reader_snapshot_survives_writes(index):
    with index.writer() as w:
        w.add(recs({"sku": "1", "title": "red shoe"}))
        w.commit()
        snapshot = index.searcher()
        w.add(recs(*({"sku": str(i), "title": "blue shoe"} for i in range(2, 50))))
        w.commit()
        assert snapshot.bm25("shoe", 100).ids == ["1"]
        assert len(index.searcher().bm25("shoe", 100)) == 49


def test_create_refuses_existing_and_open_missing(tmp_path, index):
    with pytest.raises(IndexStateError, match="already holds an index"):
        Index.create(index.path, index.schema)
    with pytest.raises(IndexStateError, match="not a souk index"):
        Index.open(tmp_path / "nothing")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"meow")
    with pytest.raises(IndexStateError, match="not empty and holds no souk index"):
        Index.create(tmp_path / "photos", index.schema)


def test_write_turn_queues_writers_and_says_when_it_waited_too_long(tmp_path):
    from souk.index.writer import write_turn

    with write_turn(tmp_path):
        with pytest.raises(IndexStateError, match="another process has been writing"):
            with write_turn(tmp_path, wait_s=0.05):
                pass
    with write_turn(tmp_path, wait_s=0.05):  # released when the first block ended
        pass
