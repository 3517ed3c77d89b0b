"""HTTP triggers on the local host: an ASGI server front that turns each request into a
`func.HttpRequest`, calls the registered HTTP function, and sends its `func.HttpResponse` back.

Routes follow the function's `route` template with host.json's routePrefix, as the Functions host
does; the catch-all `{*route}` of `AsgiFunctionApp` matches everything.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import azure.functions as func

from shared.localhost.context import LocalContext

# The largest request body the host passes to a function: the app's own limit (256 KiB for the API)
# applies after it; the host only keeps a request from filling its memory.
MAX_BODY_BYTES = 1024 * 1024

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class HttpFunction:
    name: str
    route: str
    methods: set[str]
    call: Callable[..., Any]
    wants_context: bool

    def match(self, method: str, path: str, prefix: str) -> dict[str, str] | None:
        if self.methods and method not in self.methods:
            return None
        m = _route_regex(prefix, self.route).fullmatch(path.rstrip("/") or "/")
        return {k: v for k, v in m.groupdict().items() if v is not None} if m else None


def _route_regex(prefix: str, route: str) -> re.Pattern[str]:
    parts = [p for p in (prefix.strip("/"), route.strip("/")) if p]
    pattern = ""
    for segment in "/".join(parts).split("/"):
        if not segment:
            continue
        catch_all = re.fullmatch(r"\{\*(\w+)\}", segment)
        if catch_all:
            pattern += f"(?:/(?P<{catch_all.group(1)}>.*))?"
            continue
        pattern += "/" + re.sub(r"\{(\w+)(?::[^}]*)?\??\}", r"(?P<\1>[^/]+)", segment)
    return re.compile(pattern or "/")


def http_function(fn: func.FunctionBuilder | Any) -> HttpFunction:
    trigger = fn.get_trigger()
    d = trigger.get_dict_repr()
    methods = {str(getattr(m, "value", m)).upper() for m in (d.get("methods") or [])}
    user = fn.get_user_function()
    wants_context = "context" in inspect.signature(user).parameters
    return HttpFunction(fn.get_function_name(), d.get("route") or fn.get_function_name(), methods, user,
                        wants_context)


class HttpFront:
    """An ASGI app for uvicorn that dispatches to the app's HTTP functions."""

    def __init__(self, functions: list[HttpFunction], route_prefix: str = "api",
                 max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.functions = functions
        self.route_prefix = route_prefix
        self.max_body_bytes = max_body_bytes

    async def _body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The request body, read as it streams in; None (and nothing more read) once it passes the cap."""
        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_body_bytes:
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = await self._body(scope, receive)
        response = await self.dispatch(scope, body) if body is not None else _too_large(self.max_body_bytes)
        headers = [(k.encode(), v.encode()) for k, v in response.headers.items()]
        if response.mimetype and not any(k.lower() == b"content-type" for k, _ in headers):
            headers.append((b"content-type", response.mimetype.encode()))
        await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": response.get_body()})

    async def dispatch(self, scope: Scope, body: bytes) -> func.HttpResponse:
        method = scope["method"].upper()
        path = scope["path"]
        for fn in self.functions:
            params = fn.match(method, path, self.route_prefix)
            if params is None:
                continue
            host = dict(scope.get("headers") or []).get(b"host", b"127.0.0.1").decode()
            query = scope.get("query_string", b"").decode()
            url = f"{scope.get('scheme', 'https')}://{host}{path}" + (f"?{query}" if query else "")
            headers = {k.decode(): v.decode() for k, v in scope.get("headers") or []}
            req = func.HttpRequest(method=method, url=url, headers=headers,
                                   params=dict(parse_qsl(query, keep_blank_values=True)),
                                   route_params=params, body=body)
            kwargs: dict[str, Any] = {"context": LocalContext(fn.name)} if fn.wants_context else {}
            if inspect.iscoroutinefunction(fn.call):
                return await fn.call(req, **kwargs)
            return await asyncio.to_thread(fn.call, req, **kwargs)
        return func.HttpResponse('{"error": {"code": "NotFound", "message": "No function serves this route."}}',
                                 status_code=404, mimetype="application/json")


def _too_large(limit: int) -> func.HttpResponse:
    return func.HttpResponse('{"error": {"code": "RequestEntityTooLarge", "message": "The request body is larger '
                             f'than the host accepts ({limit} bytes)."}}}}', status_code=413,
                             mimetype="application/json")
