"""host.json for the local trigger host: the queue extension's options and the HTTP route prefix,
with the Functions host's defaults, `%NAME%` app-setting resolution in binding properties, and
app settings that override host.json values as on the Functions host
(`AzureFunctionsJobHost__extensions__queues__maxPollingInterval=00:00:00.2`)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d+))?$")
_SETTING = re.compile(r"%([^%]+)%")
OVERRIDE_PREFIX = "AzureFunctionsJobHost__"


def parse_timespan(value: str | int | float) -> float:
    """A .NET TimeSpan string (`[d.]hh:mm:ss[.fff]`) in seconds; plain numbers are seconds."""
    if isinstance(value, int | float):
        return float(value)
    m = _TIMESPAN.match(value.strip())
    if not m:
        raise ValueError(f"not a TimeSpan: {value!r}")
    days, hours, minutes, seconds, fraction = m.groups()
    total = int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + int(seconds)
    return total + (float(f"0.{fraction}") if fraction else 0.0)


def resolve_settings(value: str, env: dict[str, str] | None = None) -> str:
    """Replace each `%NAME%` with the app setting NAME (an environment variable), as the host does."""
    source = os.environ if env is None else env

    def lookup(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in source:
            raise KeyError(f"app setting {name!r} used in a binding is not set")
        return source[name]

    return _SETTING.sub(lookup, value)


def with_overrides(data: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    """host.json with the `AzureFunctionsJobHost__a__b` app settings applied (keys match without case)."""
    source = os.environ if env is None else env
    out: dict[str, Any] = json.loads(json.dumps(data))
    for name, value in sorted(source.items()):
        if not name.lower().startswith(OVERRIDE_PREFIX.lower()):
            continue
        path = [p for p in name[len(OVERRIDE_PREFIX):].split("__") if p]
        node = out
        for part in path[:-1]:
            key = next((k for k in node if k.lower() == part.lower()), part)
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        if path:
            node[next((k for k in node if k.lower() == path[-1].lower()), path[-1])] = value
    return out


@dataclass(frozen=True)
class QueueOptions:
    """`extensions.queues`, with the storage extension 5.x defaults for a locally running host."""

    batch_size: int = 16
    new_batch_threshold: int = 8
    max_polling_interval_s: float = 2.0
    visibility_timeout_s: float = 0.0
    max_dequeue_count: int = 5
    message_encoding: str = "base64"

    @classmethod
    def from_dict(cls, d: dict[str, Any], cores: int) -> QueueOptions:
        batch = max(1, min(32, int(d.get("batchSize", 16))))
        threshold = int(d.get("newBatchThreshold", batch // 2 * cores))
        encoding = str(d.get("messageEncoding", "base64")).lower()
        if encoding not in ("base64", "none"):
            raise ValueError(f"messageEncoding must be base64 or none, not {encoding!r}")
        return cls(
            batch_size=batch,
            new_batch_threshold=max(0, threshold),
            max_polling_interval_s=max(0.1, parse_timespan(d.get("maxPollingInterval", "00:00:02"))),
            visibility_timeout_s=max(0.0, parse_timespan(d.get("visibilityTimeout", "00:00:00"))),
            max_dequeue_count=max(1, int(d.get("maxDequeueCount", 5))),
            message_encoding=encoding,
        )


@dataclass(frozen=True)
class HostConfig:
    queues: QueueOptions
    route_prefix: str
    function_timeout_s: float | None

    @classmethod
    def load(cls, path: Path | None, cores: int | None = None) -> HostConfig:
        data = with_overrides(json.loads(path.read_text()) if path and path.exists() else {})
        ext = data.get("extensions") or {}
        timeout = data.get("functionTimeout")
        return cls(
            queues=QueueOptions.from_dict(ext.get("queues") or {}, cores or os.cpu_count() or 1),
            route_prefix=str((ext.get("http") or {}).get("routePrefix", "api")),
            function_timeout_s=parse_timespan(timeout) if timeout and timeout != "-1" else None,
        )
