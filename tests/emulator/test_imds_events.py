"""IMDS Scheduled Events: events the emulator posts, the VM's approval, NotBefore passing, completion."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest

from shared.emulator.imds import Imds
from shared.emulator.issuer import Issuer
from tests.identity.helpers import Vm, imds_client, running_imds

VM = Vm(resource_id="/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/ss"
                    "/virtualMachines/4", name="ss_4", computer_name="ss000004",
        vm_id="0e5c0f7a-0000-4000-8000-000000000004", private_ip="127.0.0.1", priority="Spot", scale_set="ss")
NEIGHBOUR = Vm(resource_id=VM.resource_id.replace("/4", "/5"), name="ss_5", computer_name="ss000005",
               vm_id="0e5c0f7a-0000-4000-8000-000000000005", private_ip="10.213.0.15", priority="Spot",
               scale_set="ss")
START = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START.timestamp()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Issuer:
    return Issuer.load_or_create(tmp_path_factory.mktemp("issuer"), "https://127.0.0.1:1/t/v2.0", "t")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def imds(issuer: Issuer, clock: Clock) -> Iterator[Imds]:
    with running_imds(issuer, {"127.0.0.1": VM, "10.213.0.15": NEIGHBOUR}, clock) as running:
        yield running


@pytest.fixture
def client(imds: Imds) -> Iterator[httpx.Client]:
    with imds_client(imds) as c:
        yield c


def _events(client: httpx.Client) -> dict[str, Any]:
    reply = client.get("/metadata/scheduledevents", params={"api-version": "2020-07-01"})
    assert reply.status_code == 200
    return reply.json()


def _approve(client: httpx.Client, body: Any) -> httpx.Response:
    return client.post("/metadata/scheduledevents", params={"api-version": "2020-07-01"}, json=body)


def test_a_posted_event_appears_and_approving_it_starts_it(imds: Imds, client: httpx.Client) -> None:
    assert _events(client) == {"DocumentIncarnation": 1, "Events": []}
    not_before = START + timedelta(seconds=30)
    event_id = imds.post_event(VM, "Preempt", not_before)
    document = _events(client)
    assert document["DocumentIncarnation"] == 2
    [event] = document["Events"]
    assert event == {"EventId": event_id, "EventType": "Preempt", "ResourceType": "VirtualMachine",
                     "Resources": ["ss_4"], "EventStatus": "Scheduled", "NotBefore": "Wed, 02 Jan 2030 03:04:35 GMT",
                     "Description": event["Description"], "EventSource": "Platform", "DurationInSeconds": -1}
    assert parsedate_to_datetime(event["NotBefore"]) == not_before
    assert _events(client)["DocumentIncarnation"] == 2  # nothing changed, same incarnation
    assert not imds.acknowledged(event_id)

    reply = _approve(client, {"StartRequests": [{"EventId": event_id.lower()}]})
    assert reply.status_code == 200
    assert imds.acknowledged(event_id)
    document = _events(client)
    assert document["DocumentIncarnation"] == 3
    assert document["Events"][0]["EventStatus"] == "Started" and document["Events"][0]["NotBefore"] == ""


def test_an_event_starts_by_itself_when_not_before_passes(imds: Imds, client: httpx.Client, clock: Clock) -> None:
    event_id = imds.post_event(VM, "Preempt", START + timedelta(seconds=30))
    clock.now += 29
    assert _events(client)["Events"][0]["EventStatus"] == "Scheduled"
    clock.now += 1
    document = _events(client)
    assert document["DocumentIncarnation"] == 3
    assert document["Events"][0]["EventStatus"] == "Started"
    assert not imds.acknowledged(event_id)  # started by time, not approved


def test_a_completed_event_leaves_the_document(imds: Imds, client: httpx.Client) -> None:
    event_id = imds.post_event(VM, "Preempt", START + timedelta(seconds=30))
    imds.complete(event_id)
    imds.complete(event_id)
    assert _events(client) == {"DocumentIncarnation": 3, "Events": []}


def test_each_vm_sees_only_its_own_events(imds: Imds, client: httpx.Client) -> None:
    neighbours = imds.post_event(NEIGHBOUR, "Preempt", START + timedelta(seconds=30))
    assert _events(client) == {"DocumentIncarnation": 1, "Events": []}
    reply = _approve(client, {"StartRequests": [{"EventId": neighbours}]})
    assert reply.status_code == 400  # not an event of the calling VM
    assert not imds.acknowledged(neighbours)


@pytest.mark.parametrize("body", [{"StartRequests": [{"EventId": "F020BA2E-3BC0-4C40-A10B-86575A9EABD5"}]},
                                  {"StartRequests": [{}]}, {"Start": []}, "not json", [1, 2]])
def test_malformed_or_unknown_approvals_are_refused(imds: Imds, client: httpx.Client, body: Any) -> None:
    mine = imds.post_event(VM, "Preempt", START + timedelta(seconds=30))
    if body == "not json":
        reply = client.post("/metadata/scheduledevents", params={"api-version": "2020-07-01"}, content=b"{nope")
    else:
        reply = _approve(client, body)
    assert reply.status_code == 400 and reply.json()["error"].startswith("Bad request.")
    assert not imds.acknowledged(mine)
    assert _events(client)["Events"][0]["EventStatus"] == "Scheduled"
