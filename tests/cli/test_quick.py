"""`souk search` without the typer app: the same results, and an English index loads no Chinese or model
libraries in the process."""
import json
import subprocess
import sys

import pytest

from souk.cli.quick import parse_search
from support import FIXTURES, REPO, run_main, run_souk

HEAVY = ("jieba", "opencc", "torch", "lightgbm", "faiss", "sentence_transformers", "onnxruntime", "openvino")


def test_parse_search_takes_plain_lines_and_leaves_the_rest_to_typer():
    args = parse_search(["search", "red drill", "--index", "ix", "-k", "3", "--filter", "a=b", "--filter",
                         "c<2", "--json"])
    assert args["query"] == "red drill" and args["k"] == 3 and args["filters"] == ["a=b", "c<2"] and args["as_json"]
    assert parse_search(["search", "--index", "ix"])["query"] == ""
    for argv in (["index", "x"], ["search", "--help"], ["search", "x", "--index", "ix", "-k", "many"],
                 ["search", "x", "--index", "ix", "--sort", "-price"], ["search", "x"], ["search", "x", "--ind", "ix"],
                 ["search", "x", "--index", "ix", "--bogus"]):
        assert parse_search(argv) is None, argv


@pytest.fixture(scope="module")
def english_index(tmp_path_factory):
    path = tmp_path_factory.mktemp("en") / "index"
    run_main("index", str(FIXTURES / "beir-mini"), "--index", str(path))
    return path


def test_fast_path_answers_as_the_typer_command_does(english_index):
    argv = ("search", "--index", str(english_index), "solar panels", "-k", "3", "--json")
    fast = json.loads(run_souk(*argv).stdout.strip().splitlines()[-1])
    typed = json.loads(run_main(*argv).stdout.strip().splitlines()[-1])
    for per_run in ("took_ms", "timings_ms", "load_ms", "search_id"):  # differ between any two runs
        assert per_run in fast and per_run in typed
        fast.pop(per_run), typed.pop(per_run)
    assert fast == typed and fast["hits"]
    proc = run_souk("search", "--index", str(english_index / "nope"), "solar panels", "--json", check=False)
    assert proc.returncode == 2 and json.loads(proc.stdout.strip().splitlines()[-1])["kind"] == "IndexStateError"


def test_an_english_search_process_loads_no_heavy_library(english_index):
    probe = ("import sys, runpy\n"
             f"sys.argv = ['souk', 'search', '--index', {str(english_index)!r}, 'drill', '--json']\n"
             "from souk.cli import main\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             f"print([m for m in {HEAVY!r} if m in sys.modules])\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_an_english_search_process_loads_only_what_a_keyword_search_needs(english_index):
    """Beyond the heavy libraries: no terminal UI (rich), no spelling tables for a query of known words, no model,
    query-step, ranking-stage or retriever module the keyword pipeline does not name (each costs start-up)."""
    probe = ("import sys, io, contextlib\n"
             f"sys.argv = ['souk', 'search', '--index', {str(english_index)!r}, 'electricity', '--json']\n"
             "from souk.cli import main\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n"
             "    try:\n        main()\n    except SystemExit:\n        pass\n"
             "print(sorted(sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = set(eval(done.stdout.strip().splitlines()[-1]))  # noqa: S307 - our own probe's printed list
    unwanted = {"rich", "typer", "pypinyin", "rapidfuzz", "sklearn", "pydantic", "souk.catalogs", "souk.models.encoder",
                "souk.models.backends", "souk.models.cross_encoder", "souk.query.synonyms", "souk.query.intent",
                "souk.query.entities", "souk.ranking.ltr", "souk.ranking.rerank", "souk.retrieval.dense",
                "souk.retrieval.milvus", "souk.training", *HEAVY}
    assert "souk.engine" in loaded and not loaded & unwanted, sorted(loaded & unwanted)


def test_import_souk_loads_the_public_names_on_first_use():
    probe = ("import sys\nimport souk\nbefore = 'souk.engine' in sys.modules\n"
             "from souk import Engine, Index, read_catalog\n"
             "print(before, Engine.__module__, 'souk.engine' in sys.modules, "
             "all(getattr(souk, name) is not None for name in souk.__all__))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "souk.engine", "True", "True"]
