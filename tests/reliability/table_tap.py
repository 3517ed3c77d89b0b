"""A counting reverse proxy in front of Azurite's Table endpoint (loopback): every request is forwarded
as it came (Shared Key signs the path, not the host), and every entity a response carries is noted with
its table, so a test can say what the storage client was actually given."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


class TableTap:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.entities: list[tuple[str, dict[str, Any]]] = []  # (table, entity) in the order returned
        self.lock = threading.Lock()

    def note(self, path: str, body: bytes) -> None:
        table = urlsplit(path).path.rstrip("/").split("/")[-1].split("(")[0]
        try:
            payload = json.loads(body)
        except ValueError:
            return
        found = payload.get("value") if isinstance(payload, dict) and "value" in payload else [payload]
        with self.lock:
            self.entities.extend((table, e) for e in found if isinstance(e, dict) and "PartitionKey" in e)

    def of(self, table: str) -> list[dict[str, Any]]:
        with self.lock:
            return [e for t, e in self.entities if t == table]

    def clear(self) -> None:
        with self.lock:
            self.entities.clear()


def _handler(tap: TableTap) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            upstream = http.client.HTTPConnection("127.0.0.1", tap.upstream_port, timeout=60)
            try:
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
            finally:
                upstream.close()
            if self.command == "GET":
                tap.note(self.path, data)
            self.send_response(response.status, response.reason)
            for key, value in response.getheaders():
                if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_MERGE = _forward  # noqa: N815 - http verbs

    return Handler


@contextmanager
def table_tap(upstream_port: int) -> Iterator[tuple[TableTap, int]]:
    tap = TableTap(upstream_port)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(tap))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield tap, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
