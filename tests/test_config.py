"""The typed index config: the errors a user meets name the key, in one line."""
import pytest

from souk.config import check_config
from souk.errors import ConfigError
from souk.schema import Schema
from support import run_souk

BASE = {"id": "sku", "fields": {"sku": {"kind": "keyword"}, "title": {"kind": "text"}}}


@pytest.mark.parametrize("extra, message", [
    ({"pipelines": {"hybrid": 3}}, "pipelines.hybrid must be a table"),
    ({"pipelines": "x"}, "pipelines must be a table"),
    ({"search": {"fields": "title"}}, "search.fields must be a list of field names"),
])
def test_schema_sections_are_typed(extra, message):
    with pytest.raises(ConfigError, match=message):
        Schema.from_dict({**BASE, **extra})


@pytest.mark.parametrize("extra, message", [
    ({"pipelines": {"hybird": {}}}, "pipelines.hybird: not a preset"),
    ({"pipelines": {"hybrid": {"fusion": "max"}}}, r"hybrid.stages\[0\].fusion: expected one of rrf, weighted"),
    ({"pipelines": {"hybrid": {"fusion": "rrf"}}}, None),
    ({"pipelines": {"mine": {"stages": [{"stage": "recall"}, {"stage": "nope"}]}}}, r"unknown stage 'nope'"),
    ({"pipelines": {"hybrid": {"wieghts": {}}}}, "unknown key 'wieghts'"),
    ({"query": {"steps": "syntax"}}, "query.steps: expected a list"),
    ({"query": {"steps": ["spel"]}}, "query.steps: unknown step 'spel'"),
    ({"query": {"speling": {}}}, "query.speling: unknown key"),
])
def test_config_sections_owned_by_higher_layers(extra, message):
    schema = Schema.from_dict({**BASE, **extra})
    if message is None:  # valid structure; the value is checked when the stage is built
        check_config(schema)
        return
    with pytest.raises(ConfigError, match=message):
        check_config(schema)


def test_cli_reports_config_errors_in_one_line(tmp_path):
    (tmp_path / "c.jsonl").write_text('{"sku": "a", "title": "red shoe"}\n')
    (tmp_path / "s.toml").write_text('id = "sku"\n[fields.sku]\nkind = "keyword"\n[fields.title]\nkind = '
                                     '"text"\n[pipelines]\nhybrid = 3\n')
    proc = run_souk("index", str(tmp_path / "c.jsonl"), "--index", str(tmp_path / "idx"), "--schema",
                    str(tmp_path / "s.toml"), check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert (
        proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "pipelines.hybrid must be a table" in proc.stderr
    )


def test_a_pipeline_may_choose_its_own_query_steps():
    schema = Schema.from_dict({**BASE, "pipelines": {"bm25": {"query": ["syntax", "spel"]}}})
    with pytest.raises(ConfigError, match="pipelines.bm25.query.steps: unknown step 'spel'"):
        check_config(schema)
    check_config(Schema.from_dict({**BASE, "pipelines": {"bm25": {"query": ["syntax", "spell"]}}}))
