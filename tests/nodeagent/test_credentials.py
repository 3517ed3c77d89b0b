"""POST /nodeagent/credentials and /nodeagent/blobs over https, with tokens signed by a real issuer:
what a node gets, that each SAS does what it must and nothing more, and every refusal."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AzureSasCredential
from azure.core.exceptions import HttpResponseError
from azure.data.tables import TableClient
from azure.storage.blob import BlobClient
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from shared.adapters import storage
from shared.domain.messages import NodeEvent
from shared.emulator.issuer import IssuerServer
from tests.agent.conftest import Events
from tests.identity.helpers import running_issuer
from tests.nodeagent.conftest import (
    CredentialsService,
    hold_assignment,
    new_cluster,
    node_of,
    node_token,
    outputs_prefix,
    scale_set_identity,
)
from tests.polling import wait_until


def _sas_queue(url: str) -> QueueClient:
    """Messages base64-encoded, as every queue of the service carries them."""
    base, _, sas = url.partition("?")
    return QueueClient.from_queue_url(base, credential=AzureSasCredential(sas),
                                      message_encode_policy=TextBase64EncodePolicy())


def _sas_blob(url: str) -> BlobClient:
    base, _, sas = url.partition("?")
    return BlobClient.from_blob_url(base, credential=AzureSasCredential(sas))


def _refused(call: object) -> int:
    try:
        call()  # type: ignore[operator]
    except HttpResponseError as error:
        return int(error.status_code or 0)
    raise AssertionError("the call was allowed")


def test_credentials_grant_the_node_its_own_queue_and_heartbeat(node_api: CredentialsService) -> None:
    key = new_cluster()
    node = node_of(key)
    token = node_token(node_api.issuer, key)
    reply = node_api.post("/nodeagent/credentials", {"clusterKey": key, "nodeId": node}, token)
    assert reply.status_code == 200, reply.text
    doc = reply.json()
    expires = datetime.fromisoformat(doc["expiresOn"])
    assert timedelta(minutes=55) < expires - datetime.now(UTC) <= timedelta(hours=1)

    # The service created the node's queues; the node reads and deletes its own messages.
    storage.queue(node_api.conn, storage.node_queue_name(node)).send_message("for the node")
    own = _sas_queue(doc["nodeQueue"])
    (message,) = list(own.receive_messages(max_messages=5))
    own.delete_message(message)
    assert _refused(lambda: own.send_message("forged")) == 403  # read+process, not add
    _sas_queue(doc["poisonQueue"]).send_message("unreadable")
    assert _refused(lambda: list(_sas_queue(doc["poisonQueue"]).receive_messages())) == 403
    assert "events" not in doc  # events go through the service, which takes a node's own only

    beat = _sas_blob(doc["heartbeat"])
    assert beat.blob_name == storage.heartbeat_blob(key, node)
    beat.upload_blob(b"", overwrite=True, metadata={"pid": "7", "assignments": ""})
    assert _refused(lambda: beat.download_blob().readall()) == 403

    # Nothing reaches another node's queue, the tables, or another node's heartbeat.
    other = node_of(key, 2)
    storage.ensure_queue(node_api.conn, storage.node_queue_name(other))
    other_queue = QueueClient.from_queue_url(own.url.split("?")[0].replace(storage.node_queue_name(node),
                                                                           storage.node_queue_name(other)),
                                             credential=AzureSasCredential(doc["nodeQueue"].partition("?")[2]))
    assert _refused(lambda: list(other_queue.receive_messages())) == 403
    table_url = storage.table_service(node_api.conn).url
    tables = TableClient(table_url, storage.T_SCHED, credential=AzureSasCredential(doc["nodeQueue"].partition("?")[2]))
    assert _refused(lambda: list(tables.list_entities())) == 403
    other_beat = BlobClient.from_blob_url(beat.url.split("?")[0].replace(node, other),
                                          credential=AzureSasCredential(doc["heartbeat"].partition("?")[2]))
    assert _refused(lambda: other_beat.upload_blob(b"", overwrite=True)) == 403


def test_credentials_list_the_wheelhouse_with_read_links(node_api: CredentialsService) -> None:
    wheelhouse = storage.container(node_api.conn, storage.C_WHEELHOUSE)
    name = f"batchai-{uuid.uuid4().hex[:6]}-py3-none-any.whl"
    wheelhouse.upload_blob(name, b"wheel bytes")
    key = new_cluster()
    doc = node_api.post("/nodeagent/credentials", {"clusterKey": key, "nodeId": node_of(key)},
                        node_token(node_api.issuer, key)).json()
    (wheel,) = [w for w in doc["wheelhouse"] if w["name"] == name]
    link = _sas_blob(wheel["url"])
    assert link.download_blob().readall() == b"wheel bytes"
    assert _refused(lambda: link.upload_blob(b"replaced", overwrite=True)) == 403


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IssuerServer]:
    """An issuer the service does not trust (its own key and URL)."""
    with running_issuer(Path(tmp_path_factory.mktemp("stranger"))) as (server, _):
        yield server


def test_tokens_that_do_not_prove_the_node_are_refused(node_api: CredentialsService, stranger: IssuerServer) -> None:
    key = new_cluster()
    node = node_of(key)
    body = {"clusterKey": key, "nodeId": node}
    other_cluster = new_cluster()
    cases = [
        (None, 401, "AuthenticationFailed"),
        ("not-a-jwt", 401, "InvalidAuthenticationToken"),
        (node_token(stranger.issuer, key), 401, "InvalidAuthenticationToken"),  # another issuer
        (node_token(node_api.issuer, key, aud="https://management.azure.com/"), 401, "InvalidAuthenticationToken"),
        (node_token(node_api.issuer, key, exp=int(datetime.now(UTC).timestamp()) - 600), 401,
         "InvalidAuthenticationToken"),
        (node_token(node_api.issuer, key, xms_mirid=scale_set_identity(other_cluster)), 403, "AuthorizationFailed"),
        (node_token(node_api.issuer, key, xms_mirid=scale_set_identity(key).replace(
            "virtualMachineScaleSets", "virtualMachines")), 403, "AuthorizationFailed"),
    ]
    for token, status, code in cases:
        for path in ("/nodeagent/credentials", "/nodeagent/blobs"):
            reply = node_api.post(path, {**body, "assignmentId": None, "names": ["x"]}, token)
            assert (reply.status_code, reply.json()["error"]["code"]) == (status, code), (token, path, reply.text)
    # The identity check ignores case, as Azure's resource ids do.
    upper = node_token(node_api.issuer, key, xms_mirid=scale_set_identity(key).upper())
    assert node_api.post("/nodeagent/credentials", body, upper).status_code == 200


def test_a_node_id_outside_the_cluster_is_refused(node_api: CredentialsService) -> None:
    key = new_cluster()
    token = node_token(node_api.issuer, key)
    reply = node_api.post("/nodeagent/credentials", {"clusterKey": key, "nodeId": node_of(new_cluster())}, token)
    assert reply.status_code == 403 and reply.json()["error"]["code"] == "AuthorizationFailed"
    assert "is not a node of this cluster" in reply.json()["error"]["message"]


@pytest.mark.parametrize("body", [
    [], {"nodeId": "bai1"}, {"clusterKey": "not-a-key", "nodeId": "bai1"}, {"clusterKey": "a|b|c|d", "nodeId": "../x"},
    {"clusterKey": "a|b|c|d", "nodeId": 5},
])
def test_malformed_bodies_are_bad_requests(node_api: CredentialsService, body: object) -> None:
    reply = node_api.post("/nodeagent/credentials", body, "whatever")
    assert reply.status_code == 400 and "error" in reply.json()


def test_blobs_of_an_assignment_the_node_holds(node_api: CredentialsService) -> None:
    key = new_cluster()
    node = node_of(key)
    job, segment = f"j{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    assignment_id = hold_assignment(node_api.conn, key, node, job, segment)
    prefix = outputs_prefix(job, segment)
    token = node_token(node_api.issuer, key)
    names = [f"{prefix}/stdouterr/stdout.txt", f"{prefix}/outputs/MODEL/m.txt"]
    reply = node_api.post("/nodeagent/blobs", {"clusterKey": key, "nodeId": node, "assignmentId": assignment_id,
                                               "names": names}, token)
    assert reply.status_code == 200, reply.text
    doc = reply.json()
    assert sorted(doc["blobs"]) == sorted(names)
    stdout = _sas_blob(doc["blobs"][names[0]])
    stdout.create_append_blob()
    stdout.append_block(b"hello\n", appendpos_condition=0)
    assert stdout.get_blob_properties().size == 6
    assert stdout.download_blob().readall() == b"hello\n"
    _sas_blob(doc["blobs"][names[1]]).upload_blob(b"model", overwrite=True)
    assert storage.container(node_api.conn, storage.C_OUTPUTS).download_blob(names[1]).readall() == b"model"
    assert _refused(lambda: stdout.delete_blob()) == 403  # no delete


def test_blobs_outside_the_assignment_are_refused(node_api: CredentialsService) -> None:
    key = new_cluster()
    node, other = node_of(key), node_of(key, 2)
    job, segment = f"j{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    assignment_id = hold_assignment(node_api.conn, key, node, job, segment)
    prefix = outputs_prefix(job, segment)
    token = node_token(node_api.issuer, key)

    def ask(node_id: str, assignment: str | None, names: list[str]) -> tuple[int, str]:
        reply = node_api.post("/nodeagent/blobs", {"clusterKey": key, "nodeId": node_id, "assignmentId": assignment,
                                                   "names": names}, token)
        return reply.status_code, reply.json().get("error", {}).get("message", "")

    status, message = ask(node, assignment_id, [f"{prefix}/stdouterr/stdout.txt", f"{prefix}-other/x",
                                                f"{prefix}/../evil"])
    assert status == 403 and f"'{prefix}-other/x'" in message  # the first offending name
    assert ask(node, assignment_id, [f"{prefix}/a/../../b"])[0] == 403
    assert ask(node, assignment_id, [f"{prefix}/"])[0] == 403
    assert ask(node, assignment_id, [outputs_prefix("another", segment) + "/x"])[0] == 403
    assert ask(node, uuid.uuid4().hex, [f"{prefix}/x"])[0] == 403  # an assignment it does not hold
    assert ask(other, assignment_id, [f"{prefix}/x"])[0] == 403  # a node that does not hold it
    # Setup output: the node's own setup prefix, and no other node's.
    cluster = key.split("|")[3]
    own = storage.setup_output_prefix(key.split('|')[2], cluster, node)
    assert ask(node, None, [f"{own}/stdout.txt"])[0] == 200
    status, message = ask(node, None, [f"{storage.setup_output_prefix(key.split('|')[2], cluster, other)}/stdout.txt"])
    assert status == 403 and other in message


def test_a_node_sends_its_own_events_and_no_other_nodes(node_api: CredentialsService, events: Events) -> None:
    key = new_cluster()
    node, other = node_of(key), node_of(key, 2)
    token = node_token(node_api.issuer, key)

    def send(event: Any) -> int:
        body = {"clusterKey": key, "nodeId": node, "event": json.loads(event.to_json()) if event else "x"}
        return node_api.post("/nodeagent/events", body, token).status_code

    now = datetime.now(UTC).isoformat()
    assert send(NodeEvent("node-ready", key, node, now)) == 200
    assert send(NodeEvent("node-preempted", key, other, now)) == 403  # speaking for another node
    assert send(NodeEvent("node-preempted", new_cluster(), node, now)) == 403
    assert send(None) == 400
    found = wait_until(lambda: events.of(node), 10, what="the node's event on the events queue")
    assert [e["kind"] for e in found] == ["node-ready"] and events.of(other) == []
