from pathlib import Path

import pytest

from souk.errors import DatasetError
from souk.evaluation.datasets import (
    Dataset,
    iter_beir_corpus,
    load_beir,
    load_beir_qrels,
    load_jsonl_queries,
    load_trec_qrels,
)
from support import DATA, needs_shared


def test_beir_keeps_judged_queries_and_counts_skipped(tiny):
    assert sorted(tiny.queries) == ["q1", "q2", "q3", "q4", "q5"]
    assert tiny.skipped == 1 and tiny.skipped_ids == ("q6",)
    assert tiny.qrels["q1"] == {"d1": 3, "d7": 2, "d12": 1, "d2": 0}
    assert all(type(g) is int for judged in tiny.qrels.values() for g in judged.values())
    assert (tiny.name, tiny.split, len(tiny)) == ("tiny", "test", 5)


def test_trec_qrels_match_beir_qrels(fixtures: Path):
    trec = load_trec_qrels(fixtures / "tiny.qrels")
    assert trec == load_beir_qrels(fixtures / "tiny/qrels/test.tsv")


def test_missing_split_lists_available_splits(fixtures: Path):
    with pytest.raises(DatasetError, match=r"no qrels for split 'dev'; available splits: test"):
        load_beir(fixtures / "tiny", "dev")


def test_missing_directory(fixtures: Path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_beir(fixtures / "nowhere", "test")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\n", r"qrels.tsv:3: expected 3 columns"),
        ("q1\td1\thigh\n", r"qrels.tsv:1: grade 'high' is not an integer"),
        ("query-id\tcorpus-id\tscore\n", r"holds no judgments"),
    ],
)
def test_malformed_qrels_name_file_and_line(tmp_path: Path, content: str, message: str):
    path = tmp_path / "qrels.tsv"
    path.write_text(content)
    with pytest.raises(DatasetError, match=message):
        load_beir_qrels(path)


def test_trec_qrels_need_four_columns(tmp_path: Path):
    path = tmp_path / "q.qrels"
    path.write_text("1 0 d1 1\n1 d2 1\n")
    with pytest.raises(DatasetError, match=r"q.qrels:2: expected 4 columns"):
        load_trec_qrels(path)


@pytest.mark.parametrize(
    ("line", "message"),
    [("{not json", "not valid JSON"), ('{"_id": "1"}', 'needs "_id" and a "text"'), ("[1]", "JSON object")],
)
def test_malformed_queries_name_file_and_line(tmp_path: Path, line: str, message: str):
    path = tmp_path / "queries.jsonl"
    path.write_text('{"_id": "0", "text": "ok"}\n\n' + line + "\n")
    with pytest.raises(DatasetError, match=rf"queries.jsonl:3: .*{message}"):
        load_jsonl_queries(path)


def test_jsonl_queries_accept_id_and_query_keys(tmp_path: Path):
    path = tmp_path / "queries.jsonl"
    path.write_text('{"id": 7, "query": "seven"}\n{"_id": "8", "text": "eight"}\n')
    assert load_jsonl_queries(path) == {"7": "seven", "8": "eight"}


def test_judged_query_without_text_is_an_error():
    with pytest.raises(DatasetError, match="1 judged queries have no text"):
        Dataset.from_parts({"q1": "text"}, {"q1": {"d": 1}, "q2": {"d": 1}})


def test_corpus_iteration(fixtures: Path):
    docs = list(iter_beir_corpus(fixtures / "tiny"))
    assert len(docs) == 12 and docs[0]["_id"] == "d1" and docs[0]["title"]


@needs_shared("data")
def test_shared_collections_load():
    cranfield = load_beir(DATA / "cranfield", "test")
    scifact = load_beir(DATA / "scifact", "dev")
    assert (len(cranfield), cranfield.skipped) == (225, 0)
    assert (len(scifact), scifact.skipped) == (142, 0)
    assert {g for judged in cranfield.qrels.values() for g in judged.values()} <= {1, 2, 3, 4}
    assert sum(1 for _ in iter_beir_corpus(DATA / "cranfield")) == 1400


@pytest.mark.parametrize("grade, message", [
    ("1e9", "is not an integer"), ("٣", "is not an integer"), ("1_0", "is not an integer"),
    ("nan", "is not an integer"),
    ("9" * 5000, "is not an integer"), ("101", "outside -10..100"), ("-11", "outside -10..100"), ("5000", "outside"),
])
def test_qrels_grades_are_small_plain_integers(tmp_path: Path, grade: str, message: str):
    path = tmp_path / "q.tsv"
    path.write_text(f"query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t{grade}\n")
    with pytest.raises(DatasetError, match=f"q.tsv:3: grade .*{message}") as e:
        load_beir_qrels(path)
    assert len(str(e.value)) < 300
    path.write_text("q1\td1\t-2\nq1\td2\t+4\nq2\td3\t0\r\n")
    assert load_beir_qrels(path) == {"q1": {"d1": -2, "d2": 4}, "q2": {"d3": 0}}


def test_undecodable_lines_and_huge_integers_name_the_line(tmp_path: Path):
    path = tmp_path / "q.tsv"
    path.write_bytes(b"q1\td1\t1\nq1\td\xff\t1\n")
    with pytest.raises(DatasetError, match="q.tsv:2: not UTF-8"):
        load_beir_qrels(path)
    queries = tmp_path / "queries.jsonl"
    queries.write_text('{"_id": "q1", "text": "a"}\n{"_id": %s, "text": "b"}\n' % ("9" * 5000))
    with pytest.raises(DatasetError, match="queries.jsonl:2: not a readable JSON object"):
        load_jsonl_queries(queries)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=200, deadline=None)
@given(grade=st.text(st.characters(blacklist_categories=["Zs", "Cc", "Zl", "Zp", "Cs"]), min_size=1, max_size=8)
       | st.integers(-10 ** 6, 10 ** 6).map(str))
def test_property_a_grade_is_a_small_integer_or_a_line_error(tmp_path_factory, grade):
    path = tmp_path_factory.mktemp("q") / "q.tsv"
    path.write_text(f"q1\td1\t{grade}\n", encoding="utf-8")
    try:
        qrels = load_beir_qrels(path)
    except DatasetError as e:
        assert "q.tsv:1:" in str(e)
        return
    assert -10 <= qrels["q1"]["d1"] <= 100 and type(qrels["q1"]["d1"]) is int
