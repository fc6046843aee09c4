"""CLI-wide behaviour: errors as one line (and JSON with --json), --version, progress lines in logs,
terminal formatting helpers."""
import io
import json

from souk.cli.output import facet_line, format_number, plain_text
from souk.progress import ProgressLog
from souk.version import __version__
from support import FIXTURES, run_main, run_souk


def test_failing_command_with_json_prints_the_error_object_last(tmp_path):
    proc = run_souk("search", "--index", str(tmp_path / "none"), "milk", "--json", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
    err = json.loads(proc.stdout.strip().splitlines()[-1])
    assert err["kind"] == "IndexStateError" and "is not a souk index" in err["error"]


def test_rejected_records_come_with_problems_in_the_json_error(tmp_path):
    cat = tmp_path / "bad.jsonl"
    cat.write_text('{"sku": "1", "price": 1}\n{"sku": "2", "price": 2}\n{"price": 3}\n')
    proc = run_main("index", str(cat), "--index", str(tmp_path / "ix"), "--json", check=False)
    err = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 2 and err["kind"] == "DocumentError"
    assert err["problems"] == [{"line": 3, "field": "sku", "message": "missing id (or several ids)"}]


def test_usage_errors_are_error_lines_with_exit_2_and_json(tmp_path):
    proc = run_main("search", "--index", str(tmp_path), "x", "-k", "many", "--json", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: Invalid value for '-k'")
    assert json.loads(proc.stdout.strip().splitlines()[-1])["kind"] == "UsageError"
    proc = run_main("index", str(FIXTURES / "products.jsonl"), "--bogus", check=False)
    assert proc.returncode == 2 and "error: No such option: --bogus" in proc.stderr


def test_version():
    proc = run_souk("--version")
    assert proc.stdout.strip() == f"souk {__version__}"


def test_progress_is_logged_when_stderr_is_not_a_terminal(tmp_path, monkeypatch):
    out = io.StringIO()
    log = ProgressLog("indexing", 4, seconds=0, out=out)
    for _ in range(4):
        log.advance()
    log.finish()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("indexing: 1/4 (25%), 0s elapsed, about 0s left")
    assert lines[3].startswith("indexing: 4/4 (100%)") and lines[-1].startswith("indexing: done, 4 in")
    quiet = io.StringIO()
    short = ProgressLog("indexing", 4, seconds=60, out=quiet)
    short.advance(4)
    short.finish()
    assert quiet.getvalue() == ""  # short runs stay silent

    monkeypatch.setenv("SOUK_PROGRESS_SECONDS", "0")
    proc = run_main("index", str(FIXTURES / "products.jsonl"), "--index", str(tmp_path / "ix"))
    assert "indexing: 12/12 (100%)" in proc.stderr and "indexing: done, 12 in" in proc.stderr


def test_terminal_formatting_helpers():
    assert plain_text("Marks &amp; Spencer [x]") == "Marks & Spencer \\[x]"
    assert [format_number(v) for v in (7.333333333333, 18.0, 0.000123456, 123456.789, None)] == \
        ["7.33", "18", "0.0001235", "123,456.79", "-"]
    assert facet_line("brand", {"buckets": [["M&amp;S", 3]], "distinct": 97_277}) == \
        "[bold]brand[/] (≈97,277 distinct): M&S (3)"
    assert "(12 distinct)" in facet_line("brand", {"buckets": [], "distinct": 12})
    assert "(≈12 distinct)" in facet_line("brand", {"buckets": [], "distinct": 12, "approximate": True})
    assert (
        facet_line("price", {"min": 1.0, "max": 20.5, "avg": 7.3333333333333})
        == "[bold]price[/]: min 1, max 20.50, avg 7.33"
    )
