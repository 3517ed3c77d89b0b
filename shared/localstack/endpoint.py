"""The local stack's endpoint file `<state>/local/endpoint.json` (mode 0600: it holds the API token):
how clients reach the API and storage, and which processes and ports the stack runs on."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
DEFAULT_RESOURCE_GROUP = "demo"


def local_dir(state_dir: Path) -> Path:
    return state_dir / "local"


def endpoint_path(state_dir: Path) -> Path:
    return local_dir(state_dir) / "endpoint.json"


@dataclass
class Endpoint:
    url: str
    token: str
    ca_file: str
    storage_connection_string: str
    subscription_id: str = DEFAULT_SUBSCRIPTION
    resource_group: str = DEFAULT_RESOURCE_GROUP
    pids: dict[str, int] = field(default_factory=dict)  # host, azurite; empty when the stack is down
    started: dict[str, float] = field(default_factory=dict)  # process create times, to never signal a reused pid
    ports: dict[str, int] = field(default_factory=dict)  # https, blob, queue, table (+ issuer, arm, imds)
    topology: str = "processes"  # "processes" | "machines"
    issuer: str = ""  # the stack's token issuer (its OpenID discovery document: {issuer}/.well-known/...)
    notices: list[str] = field(default_factory=list)  # what its last start found (storage that did not stop cleanly)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Endpoint:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def read_endpoint_file(state_dir: Path) -> Endpoint | None:
    try:
        return Endpoint.from_dict(json.loads(endpoint_path(state_dir).read_text()))
    except FileNotFoundError:
        return None


def write_endpoint_file(state_dir: Path, endpoint: Endpoint) -> Path:
    """Write atomically, readable by the local user only."""
    path = endpoint_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(endpoint.to_dict(), f, indent=2)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path
