"""A real `souk serve` against hostile clients (issue 17): what an anonymous 300 MB chunked upload costs,
/health while a lexicon rebuild runs, wrong Host, cross-site writes, random methods, idle connections.

Memory is read from /proc/PID/status (VmRSS: now, VmHWM: the peak) of the server process before and
after; latencies with wall clocks around single requests on a loopback keep-alive connection."""
from __future__ import annotations

import http.client
import json
import random
import select
import shutil
import socket
import threading
import time

import pytest

from support import free_port, start_server

pytestmark = pytest.mark.slow
ADMIN, SEARCH = "A" * 24, "S" * 24
MB = 1024 * 1024


def start(index, port, keys=False):
    return start_server(index, port, ADMIN if keys else "", SEARCH if keys else "")


def stop(proc):
    proc.terminate()
    proc.wait(20)


@pytest.fixture(scope="module")
def open_server(demo_index, tmp_path_factory):
    path = tmp_path_factory.mktemp("hostile") / "index"
    shutil.copytree(demo_index, path)
    port = free_port()
    proc = start(path, port)
    yield proc, port
    stop(proc)


@pytest.fixture(scope="module")
def keyed_server(demo_index):
    port = free_port()
    proc = start(demo_index, port, keys=True)
    yield proc, port
    stop(proc)


def memory(pid) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in bytes."""
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, kb, _ = line.split()
                out[name[:-1]] = int(kb) * 1024
    return out


def request(port, method, path, headers=None, body=None, timeout=30):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        res = conn.getresponse()
        return res.status, res.read()
    finally:
        conn.close()


def body_chunks(total: int, size: int = 64 * 1024):
    """A chunked body of `total` bytes, made as it is sent (never held whole)."""
    piece = b"7" * size
    frame = f"{size:x}\r\n".encode() + piece + b"\r\n"
    for _ in range(total // size):
        yield frame
    yield b"0\r\n\r\n"


def chunked_upload(port, path, total, headers) -> tuple[int | None, int]:
    """POST a `total`-byte chunked body; stops sending once the server answers or closes.
    Returns (status or None, bytes of body sent)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTransfer-Encoding: chunked\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    sent, answer = 0, b""
    try:
        sock.sendall(head.encode())
        for frame in body_chunks(total):
            if select.select([sock], [], [], 0)[0]:
                break
            sock.sendall(frame)
            sent += len(frame)
        answer = sock.recv(65536)
    except (BrokenPipeError, ConnectionResetError):
        try:
            answer = sock.recv(65536)
        except OSError:
            pass
    finally:
        sock.close()
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None
    return status, sent


def test_anonymous_300_mb_chunked_uploads_cost_under_32_mb(keyed_server):
    """Four anonymous 300 MB chunked POSTs in parallel (the issue: 247 -> 533 MB for one, 1.76 GB for
    four): each gets its 401 after the head, the server stops reading, and its memory barely moves."""
    proc, port = keyed_server
    request(port, "GET", "/health")
    before = memory(proc.pid)
    results = []

    def upload(path):
        results.append(chunked_upload(port, path, 300 * MB, {"Content-Type": "application/json"}))

    threads = [threading.Thread(target=upload, args=(p,)) for p in ("/search", "/documents", "/search", "/documents")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    after = memory(proc.pid)
    grew_rss, grew_peak = after["VmRSS"] - before["VmRSS"], after["VmHWM"] - before["VmHWM"]
    print(f"\nRSS {before['VmRSS'] / MB:.0f} -> {after['VmRSS'] / MB:.0f} MB, peak {before['VmHWM'] / MB:.0f} -> "
          f"{after['VmHWM'] / MB:.0f} MB; body bytes sent before the server stopped reading: {[s for _, s in results]}")
    assert [status for status, _ in results] == [401] * 4
    assert all(sent < 300 * MB for _, sent in results), "the server stopped reading long before the end"
    assert grew_rss < 32 * MB and grew_peak < 32 * MB
    assert request(port, "GET", "/health")[0] == 200


def test_admin_chunked_upload_over_the_limit_is_413_on_received_bytes(open_server):
    """On an open server (anonymous is admin) a chunked body without Content-Length is cut at 16 MiB."""
    proc, port = open_server
    before = memory(proc.pid)
    status, sent = chunked_upload(port, "/documents", 300 * MB, {"Content-Type": "application/json"})
    after = memory(proc.pid)
    assert status == 413 and sent < 300 * MB
    assert after["VmHWM"] - before["VmHWM"] < 64 * MB and after["VmRSS"] - before["VmRSS"] < 32 * MB


def test_health_answers_within_100_ms_while_the_lexicon_rebuilds(open_server):
    """A write moves the demo index (spell step on) to a new commit: the lexicon and suggester are rebuilt
    in the background (seconds), and /health and searches answer meanwhile; the write is searchable at once.
    99% of /health answers within 100 ms and none over a second: a rebuild holding the server would hold an answer
    for its seconds, or slow many; on 2 cores shared with another test run one answer in 1,481 took 240 ms (the
    process preempted), a stall no server can rule out."""
    proc, port = open_server
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def timed(method, path, body=None):
        t0 = time.perf_counter()
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        res = conn.getresponse()
        data = json.loads(res.read())
        return res.status, data, time.perf_counter() - t0

    for _ in range(5):
        timed("GET", "/health")
    status, ack, _ = timed("POST", "/documents", json.dumps([{"code": "REBUILD1", "name": {"en": "Bilby biscuit"}}]))
    assert status == 200 and ack["written"] == 1
    health, searches, during, t0, slowest = [], [], 0, time.perf_counter(), []
    while time.perf_counter() - t0 < 60:
        _, h, dt = timed("GET", "/health")
        health.append(dt)
        slowest.append((round(dt * 1e3, 1), round(time.perf_counter() - t0, 2), h["refreshing"]))
        if "lexicon" in h["refreshing"]:
            during += 1
        elif during:
            break
        _, found, dt = timed("GET", "/search?q=bilby")
        searches.append(dt)
        assert [x["id"] for x in found["hits"]] == ["REBUILD1"]
        time.sleep(0.01)
    took = time.perf_counter() - t0
    conn.close()
    print(f"\nrebuild {took:.1f} s; /health during it: {during} answers, max {max(health) * 1e3:.1f} ms, "
          f"median {sorted(health)[len(health) // 2] * 1e3:.1f} ms; searches max {max(searches) * 1e3:.1f} ms; "
          f"slowest (ms, s after the write, refreshing): {sorted(slowest, key=lambda x: -x[0])[:3]}")
    assert during >= 10, "the rebuild ran long enough to be measured"
    assert sorted(health)[int(0.99 * len(health))] < 0.1 and max(health) < 1.0


def test_wrong_host_and_cross_site_writes_are_refused(open_server):
    _, port = open_server
    assert request(port, "GET", "/health", {"Host": "rebind.evil.example"})[0] == 400
    assert request(port, "GET", "/health", {"Host": f"localhost:{port}"})[0] == 200
    doc = json.dumps([{"code": "CSRF1", "name": {"en": "Numbat overwritten"}}])
    status, _ = request(port, "POST", "/documents", {"Content-Type": "text/plain", "Origin": "http://evil.example"},
                        doc)
    assert status == 403
    assert request(port, "POST", "/documents", {"Content-Type": "text/plain"}, doc)[0] == 415
    assert request(port, "POST", "/documents", {"Content-Type": "application/json", "Host": "evil.example"},
                   doc)[0] == 400
    _, found = request(port, "GET", "/search?q=numbat%20overwritten")
    assert json.loads(found)["total"] == 0, "nothing was written"


def test_metrics_stay_bounded_after_3000_requests_with_random_methods(open_server):
    _, port = open_server
    rng = random.Random(17)
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ!#$%&'*+-.^_`|~0123456789"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for i in range(3000):
        method = "".join(rng.choice(letters) for _ in range(rng.randint(1, 12)))
        conn.putrequest(method, f"/{rng.choice(['search', 'x', 'documents', 'metrics'])}/{i}",
                        skip_accept_encoding=True)
        conn.endheaders()
        res = conn.getresponse()
        res.read()
        if res.will_close:
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.close()
    _, text = request(port, "GET", "/metrics")
    lines = text.decode().splitlines()
    print(f"\n/metrics after 3000 random-method requests: {len(lines)} lines")
    assert len(lines) < 400 and 'method="OTHER"' in text.decode()


def test_idle_and_slow_header_connections_are_closed(open_server):
    """A connection that never sends a request, and one that sends half a head and stalls, are closed
    by the server (head deadline 10 s); an idle keep-alive connection after a response within 5 s."""
    _, port = open_server
    silent = socket.create_connection(("127.0.0.1", port))
    slow = socket.create_connection(("127.0.0.1", port))
    slow.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    kept = socket.create_connection(("127.0.0.1", port))
    kept.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    closed, t0 = {}, time.monotonic()
    socks = {"silent": silent, "slow": slow, "kept": kept}
    while len(closed) < 3 and time.monotonic() - t0 < 25:
        ready = select.select(list(s for n, s in socks.items() if n not in closed), [], [], 1)[0]
        for name, s in socks.items():
            if s in ready:
                try:
                    data = s.recv(65536)
                except ConnectionResetError:
                    data = b""
                if not data:
                    closed[name] = time.monotonic() - t0
    for s in socks.values():
        s.close()
    print(f"\nclosed after (s): {closed}")
    assert set(closed) == {"silent", "slow", "kept"}
    assert closed["kept"] < 8 and closed["silent"] < 15 and closed["slow"] < 15
