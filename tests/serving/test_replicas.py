"""Two `souk serve` replicas over one index directory (one writer): both answer, a write acknowledged by
one is searchable on the other, and each says which commit answered (`/health`, `X-Souk-Commit`)."""
from __future__ import annotations

import json
import shutil
import time
import urllib.request

import pytest

from support import free_port, start_server

pytestmark = pytest.mark.slow


def start(index, port):
    return start_server(index, port)


def call(url, data=None, method=None):
    req = urllib.request.Request(url, data=json.dumps(data).encode() if data is not None else None, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.status, json.loads(r.read())


def search(port: int, q: str) -> tuple[dict, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/search?q={q}&size=5", timeout=30) as r:
        return json.loads(r.read()), r.headers["X-Souk-Commit"]


def test_two_replicas_share_one_index_and_one_writer(demo_index, tmp_path):
    index = tmp_path / "index"
    shutil.copytree(demo_index, index)
    ports = [free_port(), free_port()]
    procs = []
    try:
        procs += [start(index, port) for port in ports]
        health = [call(f"http://127.0.0.1:{p}/health")[1] for p in ports]
        assert health[0]["commit"] == health[1]["commit"] and health[0]["status"] == "ok"
        _, commit = search(ports[1], "milk")
        assert commit == health[0]["commit"]
        doc = {"code": "ZZ1", "name": {"en": "Quokkaberry jam 200g"}, "brand": {"en": "Quokka"}}
        status, written = call(f"http://127.0.0.1:{ports[0]}/documents", [doc], method="POST")
        assert status == 200
        for _ in range(50):  # the reader replica moves to the new commit on its next search
            body, commit = search(ports[1], "quokkaberry")
            if body["hits"]:
                break
            time.sleep(0.1)
        assert [h["id"] for h in body["hits"]] == ["ZZ1"]
        after = [call(f"http://127.0.0.1:{p}/health")[1]["commit"] for p in ports]
        assert after[0] == after[1] == commit != health[0]["commit"]
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
