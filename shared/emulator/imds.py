"""The emulator's Azure Instance Metadata Service: one plain-http server for every machine of the stack.

The caller is known by its source address (`lookup(ip)`, normally the ARM emulator's record of
the VM with that private IP), as on Azure where IMDS answers each VM about itself only. Served:

- `GET /metadata/instance[/<key or index>...]`: compute and network metadata; a path below the
  root filters the document, and a leaf needs `format=text` (its value as text/plain).
- `GET /metadata/versions`: the instance API versions (unversioned).
- `GET /metadata/identity/oauth2/token?resource=R[&client_id|object_id|mi_res_id|msi_res_id]`:
  a managed identity's access token, signed by the stack's `Issuer` (OAuth-shaped errors, as IMDS).
- `GET|POST /metadata/scheduledevents`: the VM's Scheduled Events document; POST
  `{"StartRequests": [{"EventId"}]}` approves events, which then start (as Azure does once every
  VM approved or NotBefore passed). Events are posted by the emulator (`post_event`), e.g. a Spot
  eviction notice.

Azure's guards are honoured: the `Metadata: true` header is required, a request carrying
`X-Forwarded-For` is refused, duplicate query parameters are refused, `api-version` is required
and checked per endpoint (400 naming the newest supported versions), an unknown caller gets 404.
This emulation reports `compute.azEnvironment = "BatchAIEmulator"`.
"""

from __future__ import annotations

import ipaddress
import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from shared.emulator.issuer import Issuer
from shared.emulator.serving import Endpoint

AZ_ENVIRONMENT = "BatchAIEmulator"
INSTANCE_VERSIONS = ("2019-06-04", "2020-06-01", "2020-09-01", "2020-12-01", "2021-01-01", "2021-02-01",
                     "2021-05-01", "2021-12-13", "2023-07-01")
IDENTITY_VERSIONS = ("2018-02-01", "2019-08-01")
SCHEDULED_EVENTS_VERSIONS = ("2019-01-01", "2019-08-01", "2020-07-01")
TOKEN_LIFETIME_S = 3600
EVENT_DESCRIPTIONS = {
    "Preempt": "Virtual machine is being evicted.",
    "Terminate": "Virtual machine is being deleted.",
    "Reboot": "Virtual machine is going to be restarted.",
    "Redeploy": "Virtual machine is going to be moved to another host.",
    "Freeze": "Virtual machine is being paused.",
}


class IdentityView(Protocol):
    """What IMDS reads of a managed identity (the ARM emulator's `Identity`)."""

    @property
    def kind(self) -> str: ...  # "system" | "user"
    @property
    def resource_id(self) -> str: ...
    @property
    def principal_id(self) -> str: ...
    @property
    def client_id(self) -> str: ...
    @property
    def tenant_id(self) -> str: ...


class VmView(Protocol):
    """What IMDS reads of a VM (the ARM emulator's `VmRecord`)."""

    @property
    def resource_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def computer_name(self) -> str: ...
    @property
    def vm_id(self) -> str: ...
    @property
    def private_ip(self) -> str: ...
    @property
    def vm_size(self) -> str: ...
    @property
    def priority(self) -> str: ...
    @property
    def location(self) -> str: ...
    @property
    def subscription_id(self) -> str: ...
    @property
    def resource_group(self) -> str: ...
    @property
    def scale_set(self) -> str: ...
    @property
    def identities(self) -> Sequence[IdentityView]: ...
    @property
    def tags(self) -> Mapping[str, str]: ...


@dataclass
class _Event:
    event_id: str
    vm_key: str
    not_before: float
    document: dict[str, Any]
    acknowledged: bool = False


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"


def _json(status: int, document: Any) -> Reply:
    return Reply(status, json.dumps(document).encode())


def _bad_request(reason: str) -> Reply:
    return _json(400, {"error": f"Bad request. {reason}"})


def _oauth_error(status: int, error: str, description: str) -> Reply:
    return _json(status, {"error": error, "error_description": description})


class Imds:
    """The metadata endpoint of every machine in the stack, and the emulator's handle on Scheduled Events."""

    def __init__(self, issuer: Issuer, lookup: Callable[[str], VmView | None], host: str, port: int = 0, *,
                 prefix_length: int = 24, clock: Callable[[], float] = time.time) -> None:
        self.issuer = issuer
        self.lookup = lookup
        self.host = host
        self.port = port
        self.prefix_length = prefix_length  # of the machines' subnet, for network/interface/*/ipv4/subnet
        self.clock = clock
        self._lock = threading.Lock()
        self._events: dict[str, _Event] = {}  # upper-case EventId -> event
        self._incarnations: dict[str, int] = {}  # lower-case VM id -> DocumentIncarnation
        self._endpoint = Endpoint("imds")

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Imds:
        owner = self

        class _Bound(_Handler):
            imds = owner

        self.port = self._endpoint.start(self.host, self.port, _Bound, None)
        return self

    def stop(self) -> None:
        self._endpoint.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- Scheduled Events, from the emulator's side --------------------------------------------
    def post_event(self, vm: VmView, event_type: str, not_before: datetime) -> str:
        """Schedule an event for `vm`; its EventId. The VM's DocumentIncarnation increases."""
        event_id = str(uuid.uuid4()).upper()
        document = {"EventId": event_id, "EventType": event_type, "ResourceType": "VirtualMachine",
                    "Resources": [vm.name], "EventStatus": "Scheduled",
                    "NotBefore": format_datetime(not_before.astimezone(UTC), usegmt=True),
                    "Description": EVENT_DESCRIPTIONS.get(event_type, ""), "EventSource": "Platform",
                    "DurationInSeconds": -1}
        with self._lock:
            event = _Event(event_id, vm.resource_id.lower(), not_before.timestamp(), document)
            self._events[event_id] = event
            self._bump(event.vm_key)
        return event_id

    def acknowledged(self, event_id: str) -> bool:
        """Whether the VM approved the event (POST StartRequests)."""
        with self._lock:
            event = self._events.get(event_id.upper())
            return event is not None and event.acknowledged

    def complete(self, event_id: str) -> None:
        """The event's impact is over: it leaves the VM's document, as on Azure. Idempotent."""
        with self._lock:
            event = self._events.pop(event_id.upper(), None)
            if event is not None:
                self._bump(event.vm_key)

    def _bump(self, vm_key: str) -> None:
        self._incarnations[vm_key] = self._incarnations.get(vm_key, 1) + 1

    def _start(self, event: _Event) -> None:
        event.document["EventStatus"] = "Started"
        event.document["NotBefore"] = ""  # blank once started, as Azure reports it
        self._bump(event.vm_key)

    def _scheduled_events(self, vm: VmView) -> dict[str, Any]:
        key = vm.resource_id.lower()
        now = self.clock()
        with self._lock:
            mine = [e for e in self._events.values() if e.vm_key == key]
            for event in mine:
                if event.document["EventStatus"] == "Scheduled" and now >= event.not_before:
                    self._start(event)
            return {"DocumentIncarnation": self._incarnations.get(key, 1),
                    "Events": [dict(e.document) for e in mine]}

    def _approve(self, vm: VmView, body: bytes) -> Reply:
        try:
            requests = json.loads(body)["StartRequests"]
            ids = [str(r["EventId"]).upper() for r in requests]
        except (ValueError, KeyError, TypeError):
            return _bad_request('The body must be {"StartRequests": [{"EventId": ...}]}.')
        key = vm.resource_id.lower()
        with self._lock:
            events = [e for i in ids if (e := self._events.get(i)) is not None and e.vm_key == key]
            if len(events) != len(ids):
                return _bad_request("Unknown EventId.")
            for event in events:
                event.acknowledged = True
                if event.document["EventStatus"] == "Scheduled":
                    self._start(event)
        return Reply(200)

    # -- requests ----------------------------------------------------------------------------
    def dispatch(self, method: str, target: str, headers: Mapping[str, str], source_ip: str, body: bytes) -> Reply:
        """The reply to one request; `headers` keyed by lower-case name."""
        parts = urlsplit(target)
        path = parts.path.rstrip("/")
        identity = path == "/metadata/identity/oauth2/token"
        if "x-forwarded-for" in headers:
            if identity:
                return _oauth_error(400, "invalid_request", "Requests with X-Forwarded-For are not allowed")
            return _bad_request("Requests with X-Forwarded-For are not allowed.")
        if headers.get("metadata", "").lower() != "true":
            if identity:
                return _oauth_error(400, "invalid_request", "Required metadata header not specified")
            return _bad_request("Required metadata header not specified")
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        query = dict(pairs)
        if len(query) != len(pairs):
            return _bad_request("Duplicate query parameters are not allowed.")
        if path == "/metadata/versions":
            return _json(200, {"apiVersions": list(INSTANCE_VERSIONS)})
        route = _route(path)
        if route is None:
            return _json(404, {"error": "Not found"})
        versions, methods = route
        if method not in methods:
            return _json(405, {"error": "Method not allowed"})
        if query.get("api-version") not in versions:
            return _json(400, {"error": "Bad request. api-version is invalid or was not specified in the request. "
                                        "For more information refer to aka.ms/azureimds",
                               "newest-versions": sorted(versions, reverse=True)[:3]})
        vm = self.lookup(source_ip)
        if vm is None:
            return _json(404, {"error": f"Not found. No virtual machine has the address {source_ip}"})
        if identity:
            return self._token(vm, query)
        if path == "/metadata/scheduledevents":
            return _json(200, self._scheduled_events(vm)) if method == "GET" else self._approve(vm, body)
        return self._instance(vm, path.removeprefix("/metadata/instance"), query.get("format", "json"))

    def _instance(self, vm: VmView, subpath: str, fmt: str) -> Reply:
        if fmt not in ("json", "text"):
            return _bad_request(f"Unsupported format '{fmt}'.")
        node: Any = self.instance_document(vm)
        for segment in filter(None, subpath.split("/")):
            if isinstance(node, dict) and segment in node:
                node = node[segment]
            elif isinstance(node, list) and segment.isdigit() and int(segment) < len(node):
                node = node[int(segment)]
            else:
                return _json(404, {"error": "Not found"})
        if isinstance(node, str):
            if fmt != "text":
                return _bad_request("Query parameter format=text is required for leaf nodes.")
            return Reply(200, node.encode(), "text/plain; charset=utf-8")
        if fmt == "text":
            names = node.items() if isinstance(node, dict) else enumerate(node)
            listing = "\n".join(f"{k}/" if not isinstance(v, str) else str(k) for k, v in names)
            return Reply(200, listing.encode(), "text/plain; charset=utf-8")
        return _json(200, node)

    def instance_document(self, vm: VmView) -> dict[str, Any]:
        """`/metadata/instance` for `vm` (every primitive a string, as IMDS reports them)."""
        subnet = ipaddress.ip_interface(f"{vm.private_ip}/{self.prefix_length}").network
        compute = {
            "azEnvironment": AZ_ENVIRONMENT, "location": vm.location, "name": vm.name,
            "osProfile": {"adminUsername": "", "computerName": vm.computer_name,
                          "disablePasswordAuthentication": "true"},
            "osType": "Linux", "priority": vm.priority, "provider": "Microsoft.Compute",
            "evictionPolicy": "Delete" if vm.priority == "Spot" else "",
            "resourceGroupName": vm.resource_group, "resourceId": vm.resource_id,
            "subscriptionId": vm.subscription_id,
            "tags": ";".join(f"{k}:{v}" for k, v in vm.tags.items()),
            "tagsList": [{"name": k, "value": v} for k, v in vm.tags.items()],
            "vmId": vm.vm_id, "vmScaleSetName": vm.scale_set, "vmSize": vm.vm_size, "zone": "",
        }
        interface = {"ipv4": {"ipAddress": [{"privateIpAddress": vm.private_ip, "publicIpAddress": ""}],
                              "subnet": [{"address": str(subnet.network_address),
                                          "prefix": str(subnet.prefixlen)}]},
                     "ipv6": {"ipAddress": []}, "macAddress": ""}
        return {"compute": compute, "network": {"interface": [interface]}}

    def _token(self, vm: VmView, query: Mapping[str, str]) -> Reply:
        resource = query.get("resource", "")
        if not resource:
            return _oauth_error(400, "invalid_request", "Required audience parameter not specified")
        selectors = {name: query[name] for name in ("client_id", "object_id", "mi_res_id", "msi_res_id")
                     if query.get(name)}
        if len(selectors) > 1:
            return _oauth_error(400, "invalid_request",
                                "Only one of client_id, object_id or mi_res_id may be specified")
        chosen = _select_identity(vm.identities, selectors)
        if isinstance(chosen, Reply):
            return chosen
        now = int(self.clock())
        token = self.issuer.sign({"aud": resource, "sub": chosen.principal_id, "oid": chosen.principal_id,
                                  "appid": chosen.client_id, "tid": chosen.tenant_id,
                                  "xms_mirid": chosen.resource_id}, TOKEN_LIFETIME_S, now)
        return _json(200, {"access_token": token, "client_id": chosen.client_id,
                           "expires_in": str(TOKEN_LIFETIME_S), "expires_on": str(now + TOKEN_LIFETIME_S),
                           "ext_expires_in": str(TOKEN_LIFETIME_S), "not_before": str(now),
                           "resource": resource, "token_type": "Bearer"})


def _select_identity(identities: Sequence[IdentityView], selectors: Mapping[str, str]) -> IdentityView | Reply:
    """The identity a token request names; without a selector the system identity, or the only user one."""
    not_found = _oauth_error(400, "invalid_request", "Identity not found")
    if not selectors:
        system = [i for i in identities if i.kind == "system"]
        users = [i for i in identities if i.kind == "user"]
        if system:
            return system[0]
        if len(users) == 1:
            return users[0]
        if users:
            return _oauth_error(400, "invalid_request", "Multiple user assigned identities exist, please "
                                "specify the clientId / resourceId of the identity in the token request")
        return not_found
    (name, wanted), = selectors.items()
    wanted = wanted.lower()
    for identity in identities:
        value = {"client_id": identity.client_id, "object_id": identity.principal_id}.get(name, identity.resource_id)
        if value.lower() == wanted:
            return identity
    return not_found


def _route(path: str) -> tuple[Sequence[str], frozenset[str]] | None:
    """(api-versions, methods) of the endpoint serving `path`."""
    if path == "/metadata/instance" or path.startswith("/metadata/instance/"):
        return INSTANCE_VERSIONS, frozenset({"GET"})
    if path == "/metadata/identity/oauth2/token":
        return IDENTITY_VERSIONS, frozenset({"GET"})
    if path == "/metadata/scheduledevents":
        return SCHEDULED_EVENTS_VERSIONS, frozenset({"GET", "POST"})
    return None


class _Handler(BaseHTTPRequestHandler):
    imds: Imds
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        return

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        reply = self.imds.dispatch(self.command, self.path, headers, self.client_address[0], body)
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle
