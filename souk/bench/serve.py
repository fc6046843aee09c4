"""`souk bench serve`: concurrent HTTP clients on loopback against `souk serve`, next to in-process search.

Clients run in two worker processes (threads inside, one keep-alive connection each) for a bounded
time; queries are the first words of titles sampled from the index. Reports throughput, latency
percentiles, the server's stage timings (p50 of each response's `timings_ms`), errors, the server's memory,
and the same queries searched in-process for the HTTP overhead.
"""
from __future__ import annotations

import http.client
import json
import multiprocessing as mp
import os
import random
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from souk.engine import Engine
from souk.errors import SoukError

START_TIMEOUT_S = 600


def sample_queries(engine: Engine, n: int = 200, seed: int = 7) -> list[str]:
    """Short queries: the first one to three words of sampled documents' first non-empty search field."""
    searcher = engine.searcher()
    ids = searcher.ids()
    rng = random.Random(seed)
    schema = searcher.schema
    fields = [src for f in schema.search_fields for src in (schema.fields[f].copy_from or [f])]  # stored sources
    out = []
    for doc in searcher.docs(rng.sample(ids, min(n, len(ids)))):
        words = next((w for w in (str((doc or {}).get(f) or "").split() for f in fields) if w), [])
        if words:
            out.append(" ".join(words[: rng.randint(1, 3)]))
    if not out:
        raise SoukError("the index has no text to sample queries from")
    return out


def _client(port: int, queries: list[str], pipeline: str, threads: int, seconds: float, out: "mp.Queue") -> None:
    import threading

    lat: list[float] = []
    stages: dict[str, list[float]] = {}
    errors = [0]
    deadline = time.perf_counter() + seconds

    def run(offset: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        i = offset
        while time.perf_counter() < deadline:
            q = queries[i % len(queries)]
            i += 1
            path = "/search?" + urllib.parse.urlencode({"q": q, "size": 10, "pipeline": pipeline})
            t0 = time.perf_counter()
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                body = resp.read()
                if resp.status != 200:
                    errors[0] += 1
                else:
                    for name, ms in json.loads(body).get("timings_ms", {}).items():
                        stages.setdefault(name, []).append(float(ms))
            except (OSError, http.client.HTTPException):
                errors[0] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                continue
            lat.append(time.perf_counter() - t0)

    ts = [threading.Thread(target=run, args=(k * 17,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out.put((lat, errors[0], stages))


def _rss_mb(pid: int) -> float | None:
    """Resident memory of a process and its children (uvicorn's worker processes), in MB."""
    pids, total, found = [pid], 0, False
    while pids:
        p = pids.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total, found = total + int(line.split()[1]), True
            for task in Path(f"/proc/{p}/task").iterdir():
                pids += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return round(total / 1024, 1) if found else None


def bench_serve(index: str | Path, clients: int = 16, seconds: float = 10.0, pipeline: str = "keyword",
                workers: int = 1) -> dict[str, Any]:
    """Start a server (`workers` processes) on a free loopback port, load it with `clients` for `seconds`, stop it."""
    if not 1 <= clients <= 256 or not 0 < seconds <= 600 or not 1 <= workers <= 64:
        raise SoukError("--clients must be 1..256, --seconds 0..600 and --workers 1..64")
    engine = Engine.open(index)
    queries = sample_queries(engine)
    engine.search(queries[0], pipeline=pipeline)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min(seconds, 5.0):
        engine.search(queries[n % len(queries)], pipeline=pipeline, k=10)
        n += 1
    in_process_qps = n / (time.perf_counter() - t0)

    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "SOUK_ADMIN_KEY": "", "SOUK_SEARCH_KEY": ""}
    server = subprocess.Popen([sys.executable, "-m", "souk", "serve", "--index", str(index), "--port", str(port),
                               "--warm", pipeline,
                               "--workers", str(workers)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        ready_by = time.monotonic() + START_TIMEOUT_S  # a full pipeline loads models: minutes on a busy machine
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                if server.poll() is not None:
                    err = server.stderr.read().decode() if server.stderr is not None else ""
                    raise SoukError("the server did not start: " + err[-500:]) from None
                if time.monotonic() > ready_by:
                    raise SoukError(f"the server did not answer /health within {START_TIMEOUT_S} s") from None
                time.sleep(0.1)
        ctx = mp.get_context("spawn")
        out = ctx.Queue()
        procs = [ctx.Process(target=_client,
                             args=(port, queries, pipeline, clients // 2 + (clients % 2 if i == 0 else 0),
                                   seconds, out))
                 for i in range(2 if clients > 1 else 1)]
        start = time.perf_counter()
        for p in procs:
            p.start()
        parts = [out.get() for _ in procs]
        for p in procs:
            p.join()
        wall = time.perf_counter() - start
        rss = _rss_mb(server.pid)
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:  # requests still queued behind a slow pipeline: the numbers are in
            server.kill()
            server.wait()
    lat = np.asarray([x for part, _, _ in parts for x in part]) * 1e3
    errors = sum(e for _, e, _ in parts)
    stage_ms: dict[str, list[float]] = {}
    for _, _, stages in parts:
        for name, values in stages.items():
            stage_ms.setdefault(name, []).extend(values)
    qps = len(lat) / min(wall, seconds) if len(lat) else 0.0
    return {"qps": round(qps, 1), "p50_ms": round(float(np.percentile(lat, 50)), 2) if len(lat) else None,
            "p99_ms": round(float(np.percentile(lat, 99)), 2) if len(lat) else None, "errors": errors,
            "stage_p50_ms": {n: round(float(np.percentile(v, 50)), 2) for n, v in stage_ms.items()},
            "requests": int(len(lat)), "in_process_qps": round(in_process_qps, 1),
            "http_vs_in_process": round(qps / in_process_qps, 2) if in_process_qps else None,
            "clients": clients, "workers": workers, "seconds": seconds, "pipeline": pipeline, "server_rss_mb": rss}
