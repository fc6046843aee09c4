"""`souk index` against hostile and careless input: one-line errors, exit 2, nothing left behind."""
import os

import pytest

from support import FIXTURES, run_main

SCHEMA = 'id = "sku"\n[fields.sku]\nkind = "keyword"\n[fields.title]\nkind = "text"\n'


@pytest.fixture
def schema(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text(SCHEMA)
    return str(p)


def fails(*args, message):
    proc = run_main(*args, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, proc.stderr
    return proc


def test_catalog_symlinked_to_dev_zero_fails_at_once(tmp_path, schema):
    (tmp_path / "zero.jsonl").symlink_to("/dev/zero")
    fails("index", str(tmp_path / "zero.jsonl"), "--index", str(tmp_path / "ix"), "--schema", schema,
          message="is a character device, not a regular file")
    os.mkfifo(tmp_path / "fifo.jsonl")
    fails("index", str(tmp_path / "fifo.jsonl"), "--index", str(tmp_path / "ix"), message="FIFO")
    assert not (tmp_path / "ix").exists()


def test_deep_json_array_leaves_no_empty_index_behind(tmp_path, schema):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    fails("index", str(deep), "--index", str(tmp_path / "new" / "ix"), "--schema", schema,
          message="nested deeper than 64 levels (the nesting limit)")
    assert not (tmp_path / "new").exists()
    line = tmp_path / "deep.jsonl"
    line.write_text('{"sku": "1", "a": ' + "[" * 200_000 + "]" * 200_000 + "}\n")
    fails("index", str(line), "--index", str(tmp_path / "ix"), message="line 1: nested deeper than 64 levels")


def test_commit_every_must_not_be_negative(tmp_path):
    fails("index", str(FIXTURES / "products.jsonl"), "--index", str(tmp_path / "ix"), "--commit-every", "-5",
          message="--commit-every must be 0 (one commit at the end) or a number of records, not -5")


def test_csv_header_problems(tmp_path):
    dup = tmp_path / "dup.csv"
    dup.write_text("id,id,title\n1,2,x\n")
    fails("index", str(dup), "--index", str(tmp_path / "ix"), message="column 'id' appears twice")
    fails("index", str(dup), "--index", str(tmp_path / "ix"), "--columns", "a,,b", message="--columns 'a,,b'")


def test_index_leaves_the_spelling_lexicon_built_for_the_first_search(tmp_path):
    import json

    out = json.loads(run_main("index", str(FIXTURES / "beir-mini"), "--index", str(tmp_path / "ix"),
                              "--json").stdout.strip().splitlines()[-1])
    assert out["prepare_s"] >= 0 and out["commits"] == 1
    names = sorted(p.name for p in (tmp_path / "ix" / "cache").iterdir())
    assert len(names) == 2 and names[0].endswith("-bigrams.json") and names[1].startswith("lexicon-")
