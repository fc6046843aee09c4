"""The listening socket the workers share is known as TCP, so accepted connections get TCP_NODELAY."""
import asyncio
import socket

import pytest
import uvicorn

from souk.serving.server import tcp_listener


def test_listener_for_workers_is_tcp_and_accepted_connections_skip_nagle():
    config = uvicorn.Config("souk.serving.app:app_from_env", factory=True, host="127.0.0.1", port=0, workers=2,
                            log_level="error")
    listener = tcp_listener(config.bind_socket())
    address = listener.getsockname()
    assert listener.proto == socket.IPPROTO_TCP and listener.get_inheritable()
    seen = {}

    class Probe(asyncio.Protocol):
        def connection_made(self, transport):
            seen["nodelay"] = transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            transport.close()

    async def accept_one():
        server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
        _, writer = await asyncio.open_connection(*address)
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
        writer.close()
        server.close()

    asyncio.run(accept_one())
    assert seen == {"nodelay": 1}


@pytest.mark.slow
def test_serve_says_serving_only_once_the_port_answers(demo_index):
    """The "serving on" line is the signal scripts wait for: one request right after it must be answered."""
    import os
    import subprocess
    import sys
    import urllib.request

    from support import REPO, free_port

    port = free_port()
    env = {**os.environ, "SOUK_ADMIN_KEY": "", "SOUK_SEARCH_KEY": ""}
    proc = subprocess.Popen([sys.executable, "-m", "souk", "serve", "--index", str(demo_index), "--port", str(port),
                             "--workers", "2"], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    try:
        lines = []
        for line in proc.stderr:
            lines.append(line)
            if "serving" in line:
                break
        assert any("loading" in x for x in lines) and "ready in" in lines[-1], lines
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/search?q=chocolate", timeout=0.5) as r:
            assert r.status == 200  # answered at once, no connection left waiting
    finally:
        proc.terminate()
        proc.wait(10)


def test_announce_gives_up_on_a_port_nobody_answers():
    from souk.serving.server import announce_when_ready
    from support import free_port

    called = []
    assert not announce_when_ready("127.0.0.1", free_port(), lambda: called.append(1), timeout_s=0.5) and not called
