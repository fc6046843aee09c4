"""A real `souk serve` killed with SIGKILL during a stream of events: every acknowledged event survives."""
from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import threading
import time
import urllib.error
import urllib.request

import pytest

from souk.events.log import EventLog
from support import free_port, start_server


def start(index, port):
    return start_server(index, port)


def call(url, data=None):
    req = urllib.request.Request(url, data=json.dumps(data).encode() if data is not None else None,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, json.loads(r.read())


@pytest.mark.slow
def test_kill_9_during_a_stream_of_events_loses_no_acknowledged_event(demo_index, tmp_path):
    index = tmp_path / "index"
    shutil.copytree(demo_index, index, ignore=shutil.ignore_patterns("events"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start(index, port)
    acked: list[tuple[str, str]] = []
    stop = threading.Event()

    def stream(worker: int) -> None:
        n = 0
        while not stop.is_set():
            try:
                _, res = call(f"{base}/search?q=milk&size=5&session=w{worker}")
                events = [{"search_id": res["search_id"], "type": "click", "id": h["id"], "position": i + 1}
                          for i, h in enumerate(res["hits"][: 1 + n % 3])]
                status, ack = call(f"{base}/events", events)
                if status == 202:
                    acked.extend((e["search_id"], e["id"]) for e in events)
                n += 1
            except (OSError, urllib.error.URLError, http.client.HTTPException):
                return  # the server is gone: what was acknowledged so far is what counts

    threads = [threading.Thread(target=stream, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(acked) < 60 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    stop.set()
    for t in threads:
        t.join(30)
    assert len(acked) >= 60
    proc = start(index, port)  # a new server takes the log over (cutting any torn tail) and keeps appending
    try:
        _, res = call(f"{base}/search?q=chocolate&size=3")
        status, _ = call(f"{base}/events",
                         {"search_id": res["search_id"], "type": "purchase", "id": res["hits"][0]["id"]})
        assert status == 202
        old = acked[0][0]
        status, _ = call(f"{base}/events", {"search_id": old, "type": "cart", "id": acked[0][1]})
        assert status == 202, "a search logged before the crash is still known"
    finally:
        proc.terminate()
        proc.wait(10)
    logged = {(r["search_id"], r["id"]) for r in EventLog(index).read() if r["kind"] == "click"}
    assert set(acked) <= logged
    for segment in EventLog(index).segments():
        assert segment.read_bytes().endswith(b"\n")  # no torn record left behind
