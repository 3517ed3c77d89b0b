"""The local ARM emulator: the Azure Resource Manager REST API over https, the state behind it,
and the controls tests and the stack use (the route modules add Compute, Network and Container
Instances).

It answers the requests the real SDK clients send (azure-mgmt-compute, -network,
-containerinstance) with ARM's shapes: long-running operations answer 201/202 with
`Azure-AsyncOperation` and `Location`, report InProgress and then Succeeded; errors are
`{"error": {"code", "message"}}`. Every request is recorded (method, path, query, JSON body,
status; the most recent LOG_LIMIT) to assert on. `throttle(n)` makes the next n requests answer
429 with `Retry-After: 1`, and so does any request that comes sooner than that after a 429.
Bearer tokens are accepted blindly (but must be present).

Apart from that throttling window, time does not pass in the emulator: an operation advances when
it is observed (a GET of its status URL, of its resource, or of a list holding the resource). With
`lro_steps = 1` the first observation reports InProgress and the next one Succeeded. What VMs and
container groups really do (boot, run, stop, get evicted) is the business of the backends
(`backend.py`, `containers.py`).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from shared.emulator.arm import records
from shared.emulator.arm.backend import Identity, InstanceBackend, RecordsOnly, VmRecord, user_identity
from shared.emulator.arm.containers import ContainerGroupBackend, ScriptedContainerGroups
from shared.emulator.arm.sizes import DEFAULT_CATALOGUE, SizeCatalogue, sku_not_available
from shared.emulator.arm.wire import API_VERSIONS, ArmError, Operation, Reply, Request
from shared.emulator.serving import Endpoint
from shared.localstack.tls import ensure_tls

log = logging.getLogger(__name__)

DEFAULT_SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"
DEFAULT_TENANT = "00000000-0000-0000-0000-0000000000aa"
LOG_LIMIT = 20_000
FINISHED_OPERATIONS_KEPT = 2_000

Handler = Callable[["ArmEmulator", Request, re.Match[str]], Reply]


RETRY_AFTER_S = 1

class ArmEmulator:
    """The emulated ARM endpoint and its state. Route modules register handlers on it."""

    def __init__(self, directory: Path, subscription_id: str = DEFAULT_SUBSCRIPTION,
                 backend: InstanceBackend | None = None, allocate_ip: Callable[[], str] | None = None,
                 sizes: SizeCatalogue | None = None, *, tenant_id: str = DEFAULT_TENANT,
                 container_groups: ContainerGroupBackend | None = None) -> None:
        self.subscription_id = subscription_id
        self.tenant_id = tenant_id
        self.tls = ensure_tls(directory / "tls")
        self.lock = threading.RLock()
        self.resources: dict[str, dict[str, Any]] = {}  # lower-case ARM id -> resource JSON
        self.operations: dict[str, Operation] = {}
        self.log: deque[Request] = deque(maxlen=LOG_LIMIT)
        self.lro_steps = 1
        self.backend: InstanceBackend = backend or RecordsOnly()
        self.sizes = sizes or DEFAULT_CATALOGUE
        self.refused_sizes: set[str] = set()  # sizes of the catalogue the region refuses now (any case)
        self.aci_outcomes: dict[str, tuple[int, str]] = {}  # group name -> (exit code, logs), scripted groups
        self.container_groups: ContainerGroupBackend = container_groups or ScriptedContainerGroups(self)
        self._allocate_ip = allocate_ip or _DefaultAddresses()
        self._throttle = 0
        self._throttled_until = 0.0  # monotonic: until then every request is throttled again
        self._routes: list[tuple[str, re.Pattern[str], Handler, frozenset[str]]] = []
        self._endpoint = Endpoint("arm")
        self._host = "127.0.0.1"
        from shared.emulator.arm import aci, compute, load_balancers, network, virtual_machines

        for module in (compute, virtual_machines, network, load_balancers, aci):
            module.register(self)
        location = r"/subscriptions/[^/]+/providers/(?P<ns>[^/]+)/locations/[^/]+"
        self.route("GET", location + r"/operations/(?P<op>[^/]+)", _operation_status)
        self.route("GET", location + r"/operationResults/(?P<op>[^/]+)", _operation_result)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, host: str = "127.0.0.1", port: int = 0) -> ArmEmulator:
        emulator = self

        class _Handler(_HttpHandler):
            arm = emulator

        self._host = host
        self._endpoint.start(host, port, _Handler, self.tls)
        return self

    def stop(self) -> None:
        self._endpoint.stop()

    @property
    def url(self) -> str:
        return f"https://{self._host}:{self._endpoint.port}"

    @property
    def ca_file(self) -> str:
        return str(self.tls.ca_file)

    # -- controls ----------------------------------------------------------------------------
    def throttle(self, n: int) -> None:
        """The next `n` requests answer 429 TooManyRequests with `Retry-After: 1`."""
        with self.lock:
            self._throttle = n

    def requests(self, method: str | None = None, contains: str = "") -> list[Request]:
        with self.lock:
            return [r for r in self.log if (method is None or r.method == method)
                    and contains.lower() in r.path.lower()]

    def clear_log(self) -> None:
        with self.lock:
            self.log.clear()

    def settle(self) -> None:
        """Complete every pending operation now."""
        with self.lock:
            for op in list(self.operations.values()):
                op.remaining = 0
                op.observe()

    # -- what the rest of the emulated cloud (IMDS, machines) asks ARM -------------------------
    def vm_records(self) -> list[VmRecord]:
        """Every VM that exists: scale set instances (by scale set, then instance id) and single VMs."""
        with self.lock:
            return records.all_vms(self)

    def vm_by_ip(self, ip: str) -> VmRecord | None:
        return next((vm for vm in self.vm_records() if vm.private_ip == ip), None)

    def user_identity(self, resource_id: str) -> Identity:
        """The principal and client ids this emulator gives the user-assigned identity `resource_id`."""
        return user_identity(resource_id, self.tenant_id)

    # -- helpers for route modules -----------------------------------------------------------
    def route(self, method: str, pattern: str, handler: Handler, versions: frozenset[str] = frozenset()) -> None:
        """Serve `method` on paths matching `pattern`; with `versions`, other api-versions get a 400."""
        self._routes.append((method, re.compile(f"^{pattern}$", re.IGNORECASE), handler, versions))

    def allocate_ip(self) -> str:
        with self.lock:
            return self._allocate_ip()

    def check_size(self, size: str, location: str) -> None:
        """409 SkuNotAvailable for a size outside the catalogue or refused now."""
        if size not in self.sizes or size.strip().lower() in {s.lower() for s in self.refused_sizes}:
            raise ArmError(409, "SkuNotAvailable", sku_not_available(size, location))

    def begin(self, namespace: str, resource_id: str, location: str, complete: Callable[[], None]) -> dict[str, str]:
        """Start an operation; the headers that announce it (Azure-AsyncOperation, Location)."""
        op = self.add_operation(Operation(uuid.uuid4().hex, namespace, resource_id.lower(), self.lro_steps, complete))
        version = API_VERSIONS[namespace.lower()]
        base = f"{self.url}/subscriptions/{self.subscription_id}/providers/{namespace}/locations/{location}"
        return {"Azure-AsyncOperation": f"{base}/operations/{op.id}?api-version={version}",
                "Location": f"{base}/operationResults/{op.id}?api-version={version}", "Retry-After": "0"}

    def add_operation(self, op: Operation) -> Operation:
        finished = [key for key, old in self.operations.items() if old.status != "InProgress"]
        for key in finished[: max(0, len(finished) - FINISHED_OPERATIONS_KEPT)]:
            del self.operations[key]
        self.operations[op.id] = op
        return op

    def observe(self, resource_id: str) -> None:
        """A read of `resource_id` (or of a list holding it) lets its pending operations advance."""
        rid = resource_id.lower()
        for op in list(self.operations.values()):
            if op.status == "InProgress" and (op.resource_id == rid or op.resource_id.startswith(rid + "/")):
                op.observe()

    def pending(self, resource_id: str) -> bool:
        rid = resource_id.lower()
        return any(op.status == "InProgress" and op.resource_id == rid for op in self.operations.values())

    def get(self, resource_id: str) -> dict[str, Any]:
        res = self.resources.get(resource_id.lower())
        if res is None:
            kind = resource_id.rstrip("/").split("/")[-2]
            raise ArmError(404, "ResourceNotFound", f"The Resource '{kind}/{resource_id.split('/')[-1]}' "
                                                    "under resource group was not found.")
        return res

# -- dispatch ----------------------------------------------------------------------------
    def dispatch(self, request: Request, authorization: str) -> Reply:
        with self.lock:
            self.log.append(request)
            early = time.monotonic() < self._throttled_until
            if self._throttle > 0 or early:  # a retry before Retry-After is throttled again, as ARM does
                self._throttle = max(self._throttle - 1, 0)
                self._throttled_until = time.monotonic() + RETRY_AFTER_S
                reply = Reply(429, {"error": {"code": "TooManyRequests", "message": "throttled"}},
                              {"Retry-After": str(RETRY_AFTER_S)})
            elif not authorization.startswith("Bearer "):
                reply = Reply(401, {"error": {"code": "AuthenticationFailed", "message": "no bearer token"}})
            else:
                reply = self._route(request)
            request.status, request.response = reply.status, reply.body
            return reply

    def _route(self, request: Request) -> Reply:
        for method, pattern, handler, versions in self._routes:
            match = pattern.match(request.path)
            if match and method == request.method:
                version = request.query.get("api-version", "")
                if versions and version not in versions:
                    message = f"The api-version '{version}' is invalid. Supported: {sorted(versions)}"
                    return Reply(400, {"error": {"code": "InvalidApiVersionParameter", "message": message}})
                try:
                    return handler(self, request, match)
                except ArmError as err:
                    return err.reply
                except Exception as err:  # a backend failed: ARM answers 500 and the client retries
                    log.exception("%s %s failed", request.method, request.path)
                    return Reply(500, {"error": {"code": "InternalServerError",
                                                 "message": f"{type(err).__name__}: {err}"}})
        return Reply(404, {"error": {"code": "NotFound", "message": f"no route {request.method} {request.path}"}})


def _operation_status(arm: ArmEmulator, request: Request, match: re.Match[str]) -> Reply:
    op = arm.operations.get(match["op"])
    if op is None:
        raise ArmError(404, "OperationNotFound", match["op"])
    return Reply(200, {"name": op.id, "status": op.observe()})


def _operation_result(arm: ArmEmulator, request: Request, match: re.Match[str]) -> Reply:
    op = arm.operations.get(match["op"])
    if op is None:
        raise ArmError(404, "OperationNotFound", match["op"])
    if op.observe() == "InProgress":
        return Reply(202, None, {"Location": f"{arm.url}{request.path}?api-version={request.query['api-version']}",
                                 "Retry-After": "0"})
    return Reply(204)


class _HttpHandler(BaseHTTPRequestHandler):
    arm: ArmEmulator
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        return

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw.strip() else None
        request = Request(self.command, parts.path, dict(parse_qsl(parts.query)), body)
        reply = self.arm.dispatch(request, self.headers.get("Authorization", ""))
        payload = b"" if reply.body is None else json.dumps(reply.body).encode()
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("x-ms-request-id", uuid.uuid4().hex)
        if payload:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_PUT = do_PATCH = do_POST = do_DELETE = _handle


class _DefaultAddresses:
    """10.0.0.4, 10.0.0.5, ... (250 per /24), as a subnet's dynamic allocation hands them out."""

    def __init__(self) -> None:
        self._next = 0

    def __call__(self) -> str:
        ip = f"10.0.{self._next // 250}.{self._next % 250 + 4}"
        self._next += 1
        return ip
