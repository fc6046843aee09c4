"""A real `souk serve` process: searches keep answering during writes, acknowledged writes survive kill -9."""
from __future__ import annotations

import json
import shutil
import signal
import threading
import urllib.error
import urllib.request

import pytest

from support import free_port, start_server


def start(index, port, workers=1):
    return start_server(index, port, args=("--workers", str(workers)))


def call(url, data=None, method=None):
    req = urllib.request.Request(url, data=json.dumps(data).encode() if data is not None else None, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, json.loads(r.read())


@pytest.fixture
def own_index(demo_index, tmp_path):
    path = tmp_path / "index"
    shutil.copytree(demo_index, path)
    return path


def batch(n, start_at):
    return [{"code": f"W{i}", "name": {"en": f"Wombat snack number w{i}x"}, "prices": [{"price": 1.0 + i}]}
            for i in range(start_at, start_at + n)]


@pytest.mark.slow
def test_searches_answer_while_batches_are_written(own_index):
    """Two worker processes: writes from two clients queue for the index, and an acknowledged write is
    found by the next search whichever worker answers it."""
    port = free_port()
    proc = start(own_index, port, workers=2)
    base = f"http://127.0.0.1:{port}"
    errors, searches, stop = [], [0], threading.Event()

    def searcher():
        while not stop.is_set():
            try:
                status, body = call(base + "/search?q=chocolate&size=5")
                assert status == 200 and body["total"] > 0
                searches[0] += 1
            except Exception as e:  # noqa: BLE001 - every failure is counted
                errors.append(repr(e))

    def writer(first_batch):
        for b in range(first_batch, 8, 2):
            try:
                status, ack = call(base + "/documents", batch(25, b * 25), "POST")
                assert status == 200 and ack["written"] == 25
                for _ in range(3):  # each search may land on either worker
                    _, found = call(base + f"/search?q=w{b * 25 + 24}x")
                    assert [h["id"] for h in found["hits"]] == [f"W{b * 25 + 24}"], (
                        "an acknowledged write is searchable at once"
                    )
            except Exception as e:  # noqa: BLE001 - every failure is counted
                errors.append(repr(e))

    threads = [threading.Thread(target=searcher) for _ in range(4)]
    writers = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
    try:
        for t in threads + writers:
            t.start()
        for t in writers:
            t.join()
    finally:
        stop.set()
        for t in threads:
            t.join()
        proc.terminate()
        proc.wait(10)
    assert not errors and searches[0] > 20, (errors[:3], searches)
    _, everything = call_after_restart(own_index, "/search?q=wombat&size=100&page=2")
    assert everything["total"] == 200, "every acknowledged batch is in the index"


def call_after_restart(index, path):
    port = free_port()
    proc = start(index, port)
    try:
        return call(f"http://127.0.0.1:{port}{path}")
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.slow
def test_kill_9_loses_no_acknowledged_write(own_index):
    port = free_port()
    proc = start(own_index, port)
    base = f"http://127.0.0.1:{port}"
    acked = []
    for b in range(3):
        status, ack = call(base + "/documents", batch(40, b * 40), "POST")
        assert status == 200
        acked += [f"W{i}" for i in range(b * 40, b * 40 + 40)]
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    proc = start(own_index, port)
    try:
        _, found = call(base + "/search?q=wombat&size=100&page=2")
        _, first = call(base + "/search?q=wombat&size=100")
        assert first["total"] == len(acked)
        assert {h["id"] for h in first["hits"] + found["hits"]} == set(acked)
    finally:
        proc.terminate()
        proc.wait(10)
