"""What the local trigger host knows about one registered function: its trigger, its user function's
parameters, its storage connection, and the queue output bindings it may set (`func.Out`).

Binding properties go through `%NAME%` app-setting resolution, as on the Functions host.
"""

from __future__ import annotations

import base64
import contextlib
import inspect
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import azure.functions as func
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import LinearRetry, QueueClient

from shared.adapters import queue_signals, storage
from shared.localhost.hostjson import resolve_settings

DEFAULT_CONNECTION = "AzureWebJobsStorage"
FALLBACK_CONNECTION_ENV = "BATCHAI_STORAGE_CONNECTION_STRING"


def connection_string(setting: str | None) -> str:
    """The connection string an app setting name stands for (`connection` of a binding)."""
    name = setting or DEFAULT_CONNECTION
    for candidate in (name, f"AzureWebJobs{name}"):
        if os.environ.get(candidate):
            return os.environ[candidate]
    if name == DEFAULT_CONNECTION and os.environ.get(FALLBACK_CONNECTION_ENV):
        return os.environ[FALLBACK_CONNECTION_ENV]
    raise KeyError(f"no connection string in app setting {name!r} (nor {FALLBACK_CONNECTION_ENV})")


def _resolved(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        value = getattr(v, "value", v) if k == "direction" else v
        out[k] = resolve_settings(value) if isinstance(value, str) else value
    return out


class LocalOut(func.Out[Any]):
    """The value a function sets on an output binding."""

    def __init__(self) -> None:
        self._value: Any = None

    def set(self, val: Any) -> None:
        self._value = val

    def get(self) -> Any:
        return self._value


@dataclass
class QueueOutput:
    name: str
    queue_name: str
    connection: str | None

    def messages(self, value: Any) -> list[str]:
        items = value if isinstance(value, list) else [value]
        texts: list[str] = []
        for item in items:
            if item is None:
                continue
            if isinstance(item, bytes):
                texts.append(item.decode())
            elif isinstance(item, str):
                texts.append(item)
            else:
                texts.append(json.dumps(item))
        return texts


@dataclass
class FunctionSpec:
    name: str
    trigger: dict[str, Any]
    user: Callable[..., Any]
    is_async: bool
    wants_context: bool
    trigger_annotation: Any
    queue_outputs: list[QueueOutput] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)

    @property
    def trigger_type(self) -> str:
        return str(self.trigger["type"])

    @property
    def arg_name(self) -> str:
        return str(self.trigger["name"])

    @property
    def connection(self) -> str:
        return connection_string(self.trigger.get("connection"))

    @classmethod
    def of(cls, fn: Any) -> FunctionSpec:
        user = fn.get_user_function()
        signature = inspect.signature(user)
        trigger = _resolved(fn.get_trigger().get_dict_repr())
        outputs: list[QueueOutput] = []
        unsupported: list[str] = []
        for binding in fn.get_bindings():
            d = _resolved(binding.get_dict_repr())
            if d["name"] == trigger["name"] or d["type"] == "http":
                continue
            if d["type"] == "queue" and d.get("direction") == func.BindingDirection.OUT.value:
                outputs.append(QueueOutput(d["name"], d["queueName"], d.get("connection")))
            else:
                unsupported.append(f"{d['type']} binding {d['name']!r}")
        param = signature.parameters.get(trigger["name"])
        return cls(
            name=fn.get_function_name(), trigger=trigger, user=user,
            is_async=inspect.iscoroutinefunction(user),
            wants_context="context" in signature.parameters,
            trigger_annotation=param.annotation if param else inspect.Parameter.empty,
            queue_outputs=outputs, unsupported=unsupported,
        )


def encode_message(text: str, encoding: str) -> str:
    """A queue message as the host writes it under host.json's messageEncoding."""
    return base64.b64encode(text.encode()).decode() if encoding == "base64" else text


@lru_cache(maxsize=256)
def raw_queue(conn: str, name: str) -> QueueClient:
    """A queue client that sends and receives message text as is (the host does the encoding)."""
    return QueueClient.from_connection_string(conn, name, **storage.client_options(conn))


def poll_options(conn: str, retry: type[Any] = LinearRetry) -> dict[str, Any]:
    """SDK client options for the host's own polling (`retry`: that SDK's LinearRetry): one quick
    retry. A poll runs in a thread that cannot be interrupted, so the SDK's default backoff (15 s,
    then 45 s) would hold the trigger loop, and a stop, that long while storage is down; the loop
    waits between failed polls instead."""
    return {**storage.client_options(conn),
            "retry_policy": retry(backoff=1, retry_total=1, random_jitter_range=0)}


def poll_queue(conn: str, name: str) -> QueueClient:
    """The client a queue listener polls with (message text as is, quick retries)."""
    return QueueClient.from_connection_string(conn, name, **poll_options(conn))


def send_text(conn: str, queue_name: str, text: str, encoding: str) -> None:
    """Put one message, creating the queue on first use as the host's output binding does."""
    client = raw_queue(conn, queue_name)
    try:
        client.send_message(encode_message(text, encoding))
    except ResourceNotFoundError:
        with contextlib.suppress(ResourceExistsError):
            client.create_queue()
        client.send_message(encode_message(text, encoding))
    queue_signals.message_sent(queue_name)
