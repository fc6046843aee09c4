"""The listening socket the workers share is known as TCP, so accepted connections get TCP_NODELAY."""
import asyncio
import socket

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
