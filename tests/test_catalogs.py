import os

import pytest

import souk.catalogs as catalogs
from souk.catalogs import detect_format, estimate_records, read_catalog
from souk.errors import DocumentError
from souk.limits import MAX_FIELD_CHARS, MAX_NESTING
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


# ---- hostile files (issue 8) -----------------------------------------------------------------------

def test_device_and_fifo_are_refused_before_reading(tmp_path):
    (tmp_path / "zero.jsonl").symlink_to("/dev/zero")
    with pytest.raises(DocumentError, match="is a character device, not a regular file"):
        read_catalog(tmp_path / "zero.jsonl")
    os.mkfifo(tmp_path / "pipe.csv")
    with pytest.raises(DocumentError, match="FIFO"):
        read_catalog(tmp_path / "pipe.csv")  # opening a FIFO would block forever
    assert estimate_records(tmp_path / "zero.jsonl") is None
    (tmp_path / "dangling.jsonl").symlink_to(tmp_path / "nowhere.jsonl")
    with pytest.raises(DocumentError, match="dangling symlink"):
        read_catalog(tmp_path / "dangling.jsonl")


def test_deep_json_line_is_a_rejected_record_not_a_recursion_error(tmp_path):
    p = tmp_path / "deep.jsonl"
    deep = '{"id": "2", "a": ' + "[" * 200_000 + "]" * 200_000 + "}"
    just_over = '{"id": "3", "a": ' + "[" * MAX_NESTING + "]" * MAX_NESTING + "}"
    at_limit = '{"id": "4", "a": ' + "[" * (MAX_NESTING - 1) + "]" * (MAX_NESTING - 1) + "}"
    p.write_text("\n".join(['{"id": "1"}', deep, just_over, at_limit]) + "\n")
    recs = list(read_catalog(p))
    assert recs[0].data == {"id": "1"} and recs[3].data is not None
    assert recs[1].line == 2 and "nested deeper than 64 levels (the nesting limit)" in recs[1].error
    assert "nesting limit" in recs[2].error


def test_deep_json_array_file_is_one_clear_error(tmp_path):
    p = tmp_path / "deep.json"
    p.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DocumentError, match="nested deeper than 64 levels"):
        list(read_catalog(p))
    p.write_text('[{"id": "1"}, {"id": "2", "a": ' + "[" * 70 + "]" * 70 + "}]")
    recs = list(read_catalog(p))
    assert recs[0].data == {"id": "1"} and "nesting limit" in recs[1].error


def test_line_over_the_limit_is_skipped_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(catalogs, "MAX_LINE_BYTES", 100)
    p = tmp_path / "long.jsonl"
    p.write_text('{"id": "1"}\n{"id": "2", "t": "' + "x" * 5000 + '"}\n{"id": "3"}\n')
    recs = list(read_catalog(p))
    assert [r.line for r in recs] == [1, 2, 3] and recs[2].data == {"id": "3"}
    assert "line longer than 100 bytes (the line limit)" in recs[1].error
    c = tmp_path / "long.csv"
    c.write_text("id,t\n1,a\n2," + "y" * 5000 + "\n3,c\n")
    recs = list(read_catalog(c))
    assert [r.data for r in recs if r.data] == [{"id": "1", "t": "a"}, {"id": "3", "t": "c"}]
    assert recs[1].line == 3 and "line limit" in recs[1].error


def test_csv_cells_above_128k_are_read_and_above_the_field_limit_rejected_with_line(tmp_path):
    p = tmp_path / "big.csv"
    p.write_text("id,title\n1," + "x" * 200_000 + "\n2," + "y" * (MAX_FIELD_CHARS + 10) + "\n3,ok\n")
    recs = list(read_catalog(p))
    assert len(recs[0].data["title"]) == 200_000  # Python's csv default (128 KB) is not the limit
    assert recs[1].line == 3 and "a field is longer than 1,048,576 characters (the field size limit)" in recs[1].error
    assert recs[2].data == {"id": "3", "title": "ok"}


def test_csv_header_problems_name_the_column(tmp_path):
    p = tmp_path / "dup.csv"
    p.write_text("id,id,title\n1,2,x\n")
    with pytest.raises(DocumentError, match=r"column 'id' appears twice \(columns 1 and 2\)"):
        list(read_catalog(p))
    p.write_text("id,,title\n1,2,x\n")
    with pytest.raises(DocumentError, match="column 2 has no name"):
        list(read_catalog(p))


def test_csv_without_header_says_so_and_columns_name_it(tmp_path):
    p = tmp_path / "flipkart.csv"
    p.write_text("c2d766ca982e,2016-03-25 22:59:23 +0000,Alisha Solid Women's Cycling Shorts,379\n"
                 "7f7036a6d550,2016-03-25 22:59:23 +0000,FabHomeDecor Sofa Bed,32157\n")
    with pytest.raises(DocumentError, match=r"the first row looks like data, not column names .*--columns"):
        list(read_catalog(p))
    recs = list(read_catalog(p, columns=["uniq_id", "crawled", "name", "price"]))
    assert len(recs) == 2 and recs[0].data["uniq_id"] == "c2d766ca982e" and recs[1].data["price"] == "32157"
    h = tmp_path / "with_header.csv"
    h.write_text("uniq_id,name\n1,a\n")  # a header equal to the given columns is skipped, not indexed
    assert [r.data for r in read_catalog(h, columns=["uniq_id", "name"])] == [{"uniq_id": "1", "name": "a"}]
    with pytest.raises(DocumentError, match="appears twice"):
        read_catalog(h, columns=["a", "a"])
    with pytest.raises(DocumentError, match="CSV/TSV catalogs only"):
        read_catalog(FIXTURES / "products.jsonl", columns=["a"])


def test_estimate_records_counts_lines_in_chunks(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("id\n1\n2\n3")  # no final newline
    assert estimate_records(p) == 3
    assert estimate_records(FIXTURES / "products.jsonl") == 12


def test_json_array_over_the_size_limit_is_refused_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(catalogs, "MAX_JSON_ARRAY_BYTES", 10)
    p = tmp_path / "big.json"
    p.write_text('[{"id": "1"}, {"id": "2"}]')
    with pytest.raises(DocumentError, match="larger than 10 bytes .*convert it to JSONL"):
        list(read_catalog(p))


def test_byte_order_mark_and_huge_integers(tmp_path):
    p = tmp_path / "bom.jsonl"
    p.write_bytes(b'\xef\xbb\xbf{"id": "1", "n": 10}\n{"id": "2", "n": 1' + b"0" * 400 + b"}\n")
    recs = list(read_catalog(p))
    from souk.schema import OutOfRange, infer

    assert recs[0].data == {"id": "1", "n": 10} and isinstance(recs[1].data["n"], OutOfRange)  # kept as its size only
    assert recs[1].data["n"].digits == 401

    inf = infer([r.data for r in recs])  # 10**400 is no float: not a number, and said so
    assert inf.schema.fields["n"].kind != "number" and any("1 of 2 sampled values are numbers" in n for n in inf.notes)
