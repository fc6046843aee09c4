"""`souk bench cli`: how long a whole `souk search` process takes, next to a bare process that opens the same
tantivy index (the floor any Python CLI over tantivy pays: interpreter, import, open).

Each side runs `runs` times after one untimed run (which writes bytecode caches and builds souk's per-user
caches, as a user's first search does), alternating sides so that machine noise falls on both alike;
medians are reported. `ratio` is the peer's median over souk's (1.0: souk costs no more than the floor).
CPU seconds (user + system) of each process are reported too, with the load average: on a busy machine wall
times grow with the load, CPU seconds far less.
The processes run without PYTHONDONTWRITEBYTECODE, as an installed souk does.
"""
from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HEAVY = ("jieba", "opencc", "torch", "lightgbm", "faiss", "sentence_transformers", "transformers", "onnxruntime",
         "openvino", "sklearn", "pypinyin")
TARGET_S = {"english": 0.5, "chinese": 0.8}

# The souk CLI in-process with a report of which heavy modules it loaded (stderr, last line).
_PROBE = (
    "import sys, atexit\n"
    "def _report():\n"
    f"    sys.stderr.write('\\nSOUK_HEAVY ' + ','.join(m for m in {HEAVY!r} if m in sys.modules) + '\\n')\n"
    "atexit.register(_report)\n"
    "sys.argv = ['souk'] + sys.argv[1:]\n"
    "from souk.cli.main import main\n"
    "main()\n"
)


def bench_cli(index: Path, query: str, runs: int = 7, pipeline: str = "keyword") -> dict[str, Any]:
    """Median wall time of `souk search --index INDEX QUERY --json` against the peer process."""
    from souk.index import Index
    from souk.index.store import KEYWORD_DIR

    idx = Index.open(index)
    searcher = idx.searcher()
    language = "chinese" if searcher._holds_han() else "english"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    souk_cmd = [sys.executable, "-m", "souk", "search", "--index", str(index), query, "-k", "10",
                "--pipeline", pipeline, "--json"]
    peer_code = ("import tantivy, sys; i = tantivy.Index.open(sys.argv[1]); s = i.searcher(); "
                 "s.search(tantivy.Query.all_query(), 10)")
    peer_cmd = [sys.executable, "-c", peer_code, str(index / KEYWORD_DIR)]
    _run(souk_cmd, env)  # untimed: bytecode, jieba and lexicon caches
    _run(peer_cmd, env)
    times: dict[str, list[float]] = {"souk": [], "peer": []}
    cpu: dict[str, list[float]] = {"souk": [], "peer": []}  # user + system seconds: what machine load does not add
    out = ""
    for i in range(runs):
        for name in ("souk", "peer") if i % 2 == 0 else ("peer", "souk"):
            t0, c0 = time.perf_counter(), _children_cpu()
            stdout = _run(souk_cmd if name == "souk" else peer_cmd, env)
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(_children_cpu() - c0)
            if name == "souk":
                out = stdout
    probe = subprocess.run([sys.executable, "-c", _PROBE, *souk_cmd[3:]], env=env, capture_output=True, text=True)
    heavy = [line for line in probe.stderr.splitlines() if line.startswith("SOUK_HEAVY")]
    result = json.loads(out.strip().splitlines()[-1])
    souk_s, peer_s = statistics.median(times["souk"]), statistics.median(times["peer"])
    return {
        "index": str(index), "query": query, "pipeline": pipeline, "language": language, "runs": runs,
        "souk_s": round(souk_s, 3), "peer_s": round(peer_s, 3), "ratio": round(peer_s / souk_s, 3),
        "souk_runs_s": [round(t, 3) for t in times["souk"]], "peer_runs_s": [round(t, 3) for t in times["peer"]],
        "souk_cpu_s": round(statistics.median(cpu["souk"]), 3), "peer_cpu_s": round(statistics.median(cpu["peer"]), 3),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "took_ms": result.get("took_ms"), "load_ms": result.get("load_ms"),
        "heavy_modules": heavy[-1].split(" ", 1)[1].split(",") if heavy and " " in heavy[-1]
        and heavy[-1].split(" ", 1)[1] else [],
        "target_s": TARGET_S[language] if pipeline == "keyword" else 3.0,
        "peer": "python -c 'import tantivy; open the same index; one search'",
    }


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(cmd: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        from souk.errors import SoukError

        raise SoukError(f"the timed command failed (exit {done.returncode}): {done.stderr.strip()[-300:]}")
    return done.stdout
