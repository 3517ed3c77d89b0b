"""The local trigger host: loads a Functions app module and serves every registered function as the
Azure Functions host would, on this machine: HTTP over https on loopback, queue, timer and blob
triggers with host.json's settings. Runs until `stop` is set (SIGTERM/SIGINT in the process), then
stops taking work, lets running invocations finish within a grace, and shuts the ASGI app down."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import uvicorn

from shared.adapters import queue_signals
from shared.localhost.bindings import FunctionSpec, connection_string
from shared.localhost.blobs import DEFAULT_SCAN_INTERVAL_S, BlobScanner
from shared.localhost.hostjson import HostConfig
from shared.localhost.hoststore import HostStore
from shared.localhost.http import HttpFront, http_function
from shared.localhost.invoke import Invoker
from shared.localhost.loader import load_app, load_functions
from shared.localhost.queues import DEFAULT_LEASE_S, QueueListener
from shared.localhost.timers import TimerRunner
from shared.localstack.tls import ensure_tls

log = logging.getLogger("batchai.localhost")

RESTART_DELAY_S = 1.0


class Runner(Protocol):
    async def run(self, stop: asyncio.Event) -> None: ...


@dataclass
class HostOptions:
    app_module: str = "function_app"
    attribute: str = "app"
    port: int = 7071
    bind: str = "127.0.0.1"
    state_dir: Path = Path(".batchai")
    host_json: Path | None = None
    host_id: str | None = None
    blob_scan_interval_s: float = DEFAULT_SCAN_INTERVAL_S
    queue_lease_s: float = DEFAULT_LEASE_S
    max_concurrency: int = 16
    shutdown_grace_s: float = 10.0


class _HttpServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the host owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _default_host_json(module: Any) -> Path:
    beside = Path(getattr(module, "__file__", "") or ".").resolve().parent / "host.json"
    return beside if beside.exists() else Path("host.json").resolve()


def function_id(name: str) -> str:
    return f"Host.Functions.{name}"


class Host:
    def __init__(self, options: HostOptions) -> None:
        self.options = options
        self.app = load_app(options.app_module, options.attribute)
        functions = load_functions(options.app_module, options.attribute)
        module = __import__(options.app_module, fromlist=["_"])
        self.config = HostConfig.load(options.host_json or _default_host_json(module))
        self.host_id = options.host_id or re.sub(r"[^a-z0-9-]", "-", options.app_module.lower())[:32]
        self.http = [http_function(f) for f in functions if _type(f) == "httpTrigger"]
        self.specs: list[FunctionSpec] = []
        self.errors: dict[str, str] = {}
        for f in functions:
            if _type(f) == "httpTrigger":
                continue
            try:
                self.specs.append(FunctionSpec.of(f))
            except (KeyError, ValueError) as e:  # as the Functions host: this function is in error, others run
                self.errors[f.get_function_name()] = str(e)
                log.error("Function '%s' is in error and will not run: %s", f.get_function_name(), e)
        for spec in self.specs:
            for what in spec.unsupported:
                log.warning("Function '%s': the local host does not serve its %s", spec.name, what)
        self.port = options.port

    def _store(self) -> HostStore:
        return HostStore(connection_string(None), self.host_id)

    def runners(self, invoker: Invoker) -> list[tuple[str, Runner]]:
        q = self.config.queues
        out: list[tuple[str, Runner]] = []
        for spec in self.specs:
            fid = function_id(spec.name)
            try:
                if spec.trigger_type == "queueTrigger":
                    out.append((spec.name, QueueListener(spec, q, invoker, lease_s=self.options.queue_lease_s)))
                elif spec.trigger_type == "timerTrigger":
                    out.append((spec.name, TimerRunner(spec, invoker, self._store, fid)))
                elif spec.trigger_type == "blobTrigger":
                    out.append((spec.name, BlobScanner(spec, invoker, self._store, fid, q.message_encoding,
                                                       self.options.blob_scan_interval_s)))
                else:
                    log.warning("Function '%s': the local host does not serve %s triggers", spec.name,
                                spec.trigger_type)
            except (KeyError, ValueError) as e:  # a bad schedule, path or connection setting
                self.errors[spec.name] = str(e)
                log.error("Function '%s' is in error and will not run: %s", spec.name, e)
        return out

    def _bind(self) -> socket.socket:
        sock = listening_socket(self.options.bind, self.options.port)
        self.port = sock.getsockname()[1]
        return sock

    async def serve(self, stop: asyncio.Event, on_ready: Callable[[Host], None] | None = None) -> None:
        invoker = Invoker(self.options.max_concurrency, self.config.queues.message_encoding,
                          self.config.function_timeout_s)
        server: _HttpServer | None = None
        server_task: asyncio.Task[None] | None = None
        if self.http:
            bind = self.options.bind
            tls = ensure_tls(self.options.state_dir / "tls", ips=[] if bind in ("127.0.0.1", "0.0.0.0") else [bind])
            sock = self._bind()
            config = uvicorn.Config(HttpFront(self.http, self.config.route_prefix), log_level="warning",
                                    lifespan="off", ssl_certfile=str(tls.cert_file), ssl_keyfile=str(tls.key_file))
            server = _HttpServer(config)
            server_task = asyncio.create_task(server.serve(sockets=[sock]))
            while not server.started:
                if server_task.done():
                    await server_task
                    raise RuntimeError("the HTTPS server stopped while starting")
                await asyncio.sleep(0.02)
            log.info("HTTPS on https://%s:%d (%d HTTP functions)", self.options.bind, self.port, len(self.http))
        runners = self.runners(invoker)
        observer = _queue_observer([r for _, r in runners if isinstance(r, QueueListener)])
        queue_signals.subscribe(observer)
        tasks = [asyncio.create_task(_supervise(name, r.run, stop), name=name) for name, r in runners]
        log.info("Host '%s' started: %d functions", self.host_id, len(self.http) + len(self.specs))
        if on_ready:
            on_ready(self)
        await stop.wait()
        log.info("Stopping: no new work; waiting up to %.0f s for running functions", self.options.shutdown_grace_s)
        _, pending = await asyncio.wait(tasks, timeout=self.options.shutdown_grace_s)
        if pending:
            log.warning("Trigger loops still busy after %.0f s: %s", self.options.shutdown_grace_s,
                        ", ".join(sorted(t.get_name() for t in pending)))
        queue_signals.unsubscribe(observer)
        for _, r in runners:
            drain = getattr(r, "drain", None)
            if drain:
                await drain(self.options.shutdown_grace_s)
        if server and server_task:
            await _stop_http(server, server_task, self.options.shutdown_grace_s)
        await self._shutdown_asgi()
        invoker.close()
        log.info("Host stopped")

    async def _shutdown_asgi(self) -> None:
        """Tell an AsgiFunctionApp's ASGI app about shutdown here, on the loop its startup ran on."""
        if getattr(self.app, "startup_task_done", False):
            await self.app.middleware.notify_shutdown()
            self.app.startup_task_done = False


async def _stop_http(server: _HttpServer, task: asyncio.Task[None], grace_s: float) -> None:
    """Stop the HTTPS server: requests in flight get the grace; connections that are idle are closed
    without waiting for their peers to answer the TLS close (an idle client never reads it, and the
    TLS transport would wait 30 s for each)."""
    server.should_exit = True
    deadline = asyncio.get_running_loop().time() + grace_s
    while not task.done() and asyncio.get_running_loop().time() < deadline:
        listening = any(s.is_serving() for s in server.servers)
        if not listening and not server.server_state.tasks:  # no new request can come, none is in flight
            break
        await asyncio.sleep(0.05)
    server.force_exit = True
    await task


def _queue_observer(listeners: list[QueueListener]) -> Callable[[str], None]:
    """Wake the listeners of a queue this process just wrote to."""
    by_queue: dict[str, list[QueueListener]] = {}
    for listener in listeners:
        by_queue.setdefault(listener.queue_name, []).append(listener)

    def observe(queue_name: str) -> None:
        for listener in by_queue.get(queue_name.lower(), ()):
            listener.notify()
    return observe


def _type(fn: Any) -> str:
    return str(fn.get_trigger().get_dict_repr()["type"])


async def _supervise(name: str, run: Callable[[asyncio.Event], Awaitable[None]], stop: asyncio.Event) -> None:
    """Keep a trigger's loop alive: an unexpected error restarts it after a short delay."""
    while not stop.is_set():
        try:
            await run(stop)
            return
        except Exception:
            log.exception("The trigger loop of '%s' failed; restarting it", name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RESTART_DELAY_S)


def listening_socket(bind: str, port: int) -> socket.socket:
    """The HTTP listener. IPPROTO_TCP is named, not 0: asyncio sets TCP_NODELAY only on accepted sockets
    whose protocol says TCP, and without it a response's body waits behind its headers for the client's
    delayed ACK (about 40 ms a request)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((bind, port))
    sock.set_inheritable(True)
    return sock
