from pathlib import Path

import pytest

from souk.errors import DatasetError
from souk.evaluation.runs import read_run, sort_run, trec_order, write_run


def test_trec_order_is_score_desc_then_docid_desc():
    docs, scores = trec_order([("d12", 9.0), ("d1", 12.5), ("d7", 9.0), ("d2", 3.0)])
    assert docs.tolist() == ["d1", "d7", "d12", "d2"]  # "d7" > "d12" as strings, like strcmp
    assert scores.tolist() == [12.5, 9.0, 9.0, 3.0]


def test_read_ignores_the_rank_column(fixtures: Path):
    run = read_run(fixtures / "run_a.trec")
    assert set(run) == {"q1", "q2", "q3", "q4", "q6"}
    assert [d for d, _ in sort_run(run)["q1"]] == ["d1", "d7", "d12", "d2", "d10"]


def test_write_then_read_round_trips_every_digit(tmp_path: Path):
    run = {"q1": [("a", 0.1 + 0.2), ("b", 1e-9), ("c", -2.5)], "q2": [("x", 1 / 3)]}
    path = write_run(run, tmp_path / "sub" / "run.trec", tag="t")
    assert read_run(path) == run
    assert path.read_text().splitlines()[0] == "q1 Q0 a 1 0.30000000000000004 t"


def test_sort_run_cuts_to_depth():
    run = {"q": [(f"d{i}", float(i)) for i in range(10)]}
    assert sort_run(run, 3) == {"q": [("d9", 9.0), ("d8", 8.0), ("d7", 7.0)]}
    assert sort_run({"q": []}) == {"q": []}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("q1 Q0 d1 1 2.0 t\nq1 Q0 d2 2 1.0\n", r"run.trec:2: expected 6 columns"),
        ("q1 Q0 d1 1 high t\n", r"run.trec:1: score 'high' is not a number"),
        ("q1 Q0 d1 1 2.0 t\n\nq1 Q0 d1 2 1.0 t\n", r"run.trec:3: document d1 appears twice"),
    ],
)
def test_malformed_run_names_file_and_line(tmp_path: Path, content: str, message: str):
    path = tmp_path / "run.trec"
    path.write_text(content)
    with pytest.raises(DatasetError, match=message):
        read_run(path)


def test_missing_run_file_and_bad_tag(tmp_path: Path):
    with pytest.raises(DatasetError, match="does not exist"):
        read_run(tmp_path / "none.trec")
    with pytest.raises(DatasetError, match="one word"):
        write_run({}, tmp_path / "r.trec", tag="two words")
