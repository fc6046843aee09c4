import pytest

from souk.catalogs import detect_format, read_catalog
from souk.errors import DocumentError
from support import FIXTURES


def test_jsonl_with_bad_lines(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_bytes(b'{"id": "1"}\n{broken\n\n"str"\n{"id": "\xff\xfe"}\n')
    recs = list(read_catalog(p))
    assert [r.line for r in recs] == [1, 2, 4, 5]
    assert recs[0].data == {"id": "1"}
    assert "invalid JSON" in recs[1].error
    assert "expected a JSON object" in recs[2].error
    assert "invalid UTF-8" in recs[3].error


def test_csv_and_tsv(tmp_path):
    p = tmp_path / "c.csv"
    p.write_bytes(b'id,title\n1,"Cake, cherry"\n2,\xff\n3,a,b\n')
    recs = list(read_catalog(p))
    assert recs[0].data == {"id": "1", "title": "Cake, cherry"}
    assert recs[1].error == "invalid UTF-8" and recs[1].line == 3
    assert "expected 2 columns" in recs[2].error
    t = tmp_path / "c.tsv"
    t.write_text("id\ttitle\n7\tTea\n", encoding="utf-8")
    assert [r.data for r in read_catalog(t)] == [{"id": "7", "title": "Tea"}]


def test_json_array_and_beir_dir():
    assert detect_format(FIXTURES / "beir-mini") == "beir"
    assert len(list(read_catalog(FIXTURES / "beir-mini"))) == 8


def test_unknown_format_and_missing(tmp_path):
    (tmp_path / "x.xml").write_text("<a/>")
    with pytest.raises(DocumentError, match="unknown catalog format"):
        list(read_catalog(tmp_path / "x.xml"))
    with pytest.raises(DocumentError, match="does not exist"):
        list(read_catalog(tmp_path / "nope.jsonl"))
