import pytest

from souk.errors import DatasetError
from souk.query.entities.data import read_tagged, unit
from support import FIXTURES


def test_reads_the_fixture_and_normalizes_characters():
    sentences = read_tagged(FIXTURES / "ner-mini.jsonl")
    assert len(sentences) == 12 and len(sentences[0].chars) == len(sentences[0].tags)
    assert [unit(c) for c in "ＡＢ（Ｘ）嘉頓"] == list("ab(x)嘉顿")


@pytest.mark.parametrize("line, message", [
    ('{"chars": ["a"], "tags": ["O"]', "not valid JSON"),
    ('{"chars": ["a", "b"], "tags": ["O"]}', "2 chars but 1 tags"),
    ('{"chars": ["a"], "tags": ["S-BRAND"]}', "not BIO"),
    ('{"chars": ["ab"], "tags": ["O"]}', "one character"),
    ('["a", "O"]', "lists \\\"chars\\\" and \\\"tags\\\""),
])
def test_bad_lines_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"chars": ["a"], "tags": ["B-X"]}\n\n' + line + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=f"bad.jsonl:3: .*{message}"):
        read_tagged(path)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(DatasetError, match="no such file"):
        read_tagged(tmp_path / "absent.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DatasetError, match="no tagged sentences"):
        read_tagged(tmp_path / "empty.jsonl")
