"""The Scheduled Events poller (the Azure source of preemption notices) against a local IMDS stand-in."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from shared.agent.preemption import ScheduledEventsPoller, preempt_events
from tests.agent.conftest import wait_until

PREEMPT = {"EventId": "A123", "EventType": "Preempt", "ResourceType": "VirtualMachine",
           "Resources": ["vm-1"], "EventStatus": "Scheduled", "NotBefore": "Mon, 19 Sep 2016 18:29:47 GMT"}
REBOOT = {**PREEMPT, "EventId": "B456", "EventType": "Reboot"}


class Imds:
    def __init__(self) -> None:
        self.document: dict[str, Any] = {"DocumentIncarnation": 1, "Events": []}
        self.requests: list[str | None] = []
        imds = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server protocol
                imds.requests.append(self.headers.get("Metadata"))
                if self.headers.get("Metadata") != "true" or "scheduledevents" not in self.path:
                    self.send_response(400)
                    self.end_headers()
                    return
                body = json.dumps(imds.document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/metadata/scheduledevents?api-version=2020-07-01"


@pytest.fixture
def imds() -> Iterator[Imds]:
    server = Imds()
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.server.shutdown()


def test_preempt_events_are_picked_for_this_vm_only() -> None:
    doc = {"Events": [REBOOT, PREEMPT, {**PREEMPT, "EventId": "C", "Resources": ["vm-2"]}]}
    assert [e["EventId"] for e in preempt_events(doc, "vm-1")] == ["A123"]
    assert [e["EventId"] for e in preempt_events(doc)] == ["A123", "C"]
    assert preempt_events({"DocumentIncarnation": 3, "Events": []}) == []


def test_poller_fires_once_when_a_preempt_event_appears(imds: Imds) -> None:
    notices: list[str] = []
    stopping = threading.Event()
    poller = ScheduledEventsPoller(notices.append, stopping, url=imds.url, vm_name="vm-1", interval_s=0.1)
    imds.document = {"DocumentIncarnation": 2, "Events": [REBOOT]}
    assert poller.poll_once() == []
    poller.start()
    wait_until(lambda: len(imds.requests) >= 3, 10, what="the poller to poll")
    assert notices == []
    imds.document = {"DocumentIncarnation": 3, "Events": [REBOOT, PREEMPT]}
    wait_until(lambda: notices, 10, what="the preemption notice")
    assert notices == ["scheduled event A123"]
    assert set(imds.requests) == {"true"}  # every request carried the Metadata header
    stopping.set()
