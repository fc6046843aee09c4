"""The server processes: uvicorn running `app_from_env`, in one process or a supervisor with N workers.

uvicorn's multi-worker path binds the listening socket without saying it is TCP, so asyncio never
sets TCP_NODELAY on accepted connections and every keep-alive response waits ~40 ms on the client's
delayed ACK (uvicorn issue #3149). The socket is re-wrapped as TCP before the workers inherit it.

Readiness: each process loads the index, builds and runs the warm pipelines (models loaded) before it
answers; `serve(on_ready=...)` calls back only once `/health` answers over the real port, so "serving
on ..." is never printed while connections would still wait.
"""
from __future__ import annotations

import os
import socket
import threading
import time
import urllib.error
import urllib.request
from typing import Callable

READY_POLL_S = 0.1


def serve(host: str, port: int, workers: int = 1, on_ready: Callable[[], None] | None = None) -> None:
    """Run the API on host:port until interrupted (the index and options come from SOUK_SERVE_*);
    `on_ready` is called (from another thread) once the server answers requests."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from souk.limits import KEEP_ALIVE_S, MAX_HEAD_BYTES

    os.environ["SOUK_SERVE_HOST"] = host  # the Host check of `app_from_env` answers the bound address
    # h11 with a deadline on request heads, idle keep-alive connections closed, heads of bounded size
    config = uvicorn.Config("souk.serving.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                            log_level="warning", access_log=False, http="souk.serving.guard:GuardedH11",
                            timeout_keep_alive=KEEP_ALIVE_S, h11_max_incomplete_event_size=MAX_HEAD_BYTES)
    if on_ready is not None:
        threading.Thread(target=announce_when_ready, args=(host, port, on_ready), daemon=True,
                         name="souk-ready").start()
    if workers == 1:
        uvicorn.Server(config).run()
        return
    Multiprocess(config, sockets=[tcp_listener(config.bind_socket())]).run()


def announce_when_ready(host: str, port: int, on_ready: Callable[[], None], timeout_s: float | None = None) -> bool:
    """Call `on_ready` once GET /health on host:port gets an HTTP answer (any status); False if
    `timeout_s` passes first. A wildcard host (0.0.0.0, ::) is probed on loopback."""
    probe = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    url = f"http://{'[' + probe + ']' if ':' in probe else probe}:{port}/health"
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while deadline is None or time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5):
                pass
        except urllib.error.HTTPError:
            pass  # answered (a key may be required): ready
        except (OSError, ValueError):
            time.sleep(READY_POLL_S)
            continue
        on_ready()
        return True
    return False


def tcp_listener(sock: socket.socket) -> socket.socket:
    """The same listening socket, known to Python as TCP (so accepted connections get TCP_NODELAY)."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.proto == socket.IPPROTO_TCP:
        return sock
    out = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
    out.set_inheritable(True)
    return out
