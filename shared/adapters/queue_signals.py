"""Signals that this process put a message on a queue, for listeners in the same process.

The Azure Functions host wakes a queue trigger's listener at once when a function of the same
host writes to that queue, instead of waiting for the listener's next poll. The local trigger host
does the same by subscribing here; `storage.queue()` clients signal every message they send. With
no subscriber (a node agent, a client, an Azure Functions worker) a signal costs nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

Observer = Callable[[str], None]  # called with the queue name, on the sending thread

_observers: list[Observer] = []
_lock = threading.Lock()


def subscribe(observer: Observer) -> None:
    with _lock:
        _observers.append(observer)


def unsubscribe(observer: Observer) -> None:
    with _lock:
        if observer in _observers:
            _observers.remove(observer)


def message_sent(queue_name: str) -> None:
    with _lock:
        observers = list(_observers)
    for observer in observers:
        observer(queue_name)


def response_hook(queue_name: str) -> Callable[[Any], None]:
    """A storage SDK `raw_response_hook` that signals each message the client put on `queue_name`."""
    def hook(response: Any) -> None:
        http = response.http_response
        request = response.http_request
        if request.method == "POST" and http.status_code == 201 and _observers:
            message_sent(queue_name)
    return hook
