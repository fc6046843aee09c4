"""The server processes: uvicorn running `app_from_env`, in one process or a supervisor with N workers.

uvicorn's multi-worker path binds the listening socket without saying it is TCP, so asyncio never
sets TCP_NODELAY on accepted connections and every keep-alive response waits ~40 ms on the client's
delayed ACK (uvicorn issue #3149). The socket is re-wrapped as TCP before the workers inherit it.
"""
from __future__ import annotations

import os
import socket


def serve(host: str, port: int, workers: int = 1) -> None:
    """Run the API on host:port until interrupted (the index and options come from SOUK_SERVE_*)."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from souk.serving.guard import KEEP_ALIVE_S, MAX_HEAD_BYTES

    os.environ["SOUK_SERVE_HOST"] = host  # the Host check of `app_from_env` answers the bound address
    # h11 with a deadline on request heads, idle keep-alive connections closed, heads of bounded size
    config = uvicorn.Config("souk.serving.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                            log_level="warning", access_log=False, http="souk.serving.guard:GuardedH11",
                            timeout_keep_alive=KEEP_ALIVE_S, h11_max_incomplete_event_size=MAX_HEAD_BYTES)
    if workers == 1:
        uvicorn.Server(config).run()
        return
    Multiprocess(config, sockets=[tcp_listener(config.bind_socket())]).run()


def tcp_listener(sock: socket.socket) -> socket.socket:
    """The same listening socket, known to Python as TCP (so accepted connections get TCP_NODELAY)."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.proto == socket.IPPROTO_TCP:
        return sock
    out = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
    out.set_inheritable(True)
    return out
