"""Serving one emulated endpoint: a threaded HTTP server (TLS when given the stack's certificate)
on a background thread, its bound port, and a stop that returns within a tenth of a second."""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from shared.localstack.tls import TlsFiles

SHUTDOWN_POLL_S = 0.1  # how soon stop() returns


class Endpoint:
    def __init__(self, name: str) -> None:
        self.name = name
        self._server: ThreadingHTTPServer | None = None

    def start(self, host: str, port: int, handler: type[BaseHTTPRequestHandler], tls: TlsFiles | None) -> int:
        """Listen on `host:port` (0: any free port) and answer with `handler`; the bound port."""
        # TCP_NODELAY: the handler writes headers and body apart; with Nagle on, the body waits for the
        # client's delayed ACK (~40 ms a response).
        nodelay = type(handler.__name__, (handler,), {"disable_nagle_algorithm": True})
        server = ThreadingHTTPServer((host, port), nodelay)
        server.daemon_threads = True
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls.cert_file, tls.key_file)
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        threading.Thread(target=server.serve_forever, args=(SHUTDOWN_POLL_S,), name=self.name, daemon=True).start()
        return int(server.server_address[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def port(self) -> int:
        assert self._server is not None, f"{self.name} is not serving"
        return int(self._server.server_address[1])
