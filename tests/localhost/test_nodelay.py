"""The servers of the stack send small responses at once: TCP_NODELAY is on for every connection the
trigger host's listener (served by asyncio, as uvicorn serves it) and an emulator endpoint accept. Each
server reports the option as its accepted socket has it."""

from __future__ import annotations

import asyncio
import socket
import urllib.request
from http.server import BaseHTTPRequestHandler

from shared.emulator.serving import Endpoint
from shared.localhost.host import listening_socket


def test_the_host_listener_gives_accepted_connections_nodelay() -> None:
    async def run() -> int:
        async def report(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted = writer.get_extra_info("socket")
            writer.write(str(accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)).encode())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(report, sock=listening_socket("127.0.0.1", 0))
        port = server.sockets[0].getsockname()[1]
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            answer = await reader.read()
            writer.close()
        return int(answer)

    assert asyncio.run(run()) == 1


class _Report(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the base class's naming
        body = str(self.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


def test_an_emulator_endpoint_answers_with_nodelay() -> None:
    endpoint = Endpoint("report")
    port = endpoint.start("127.0.0.1", 0, _Report, None)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as response:  # noqa: S310 - loopback
            assert response.read() == b"1"
    finally:
        endpoint.stop()
