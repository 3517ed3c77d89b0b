"""Queue submissions act for the principal whose token the message carries (validated as the API
validates tokens; the principal must be allowed jobs/write on the workspace), reply only to reply
queues, and are recorded redacted when refused. The submission service is called directly, as the
queue trigger calls it, against Azurite and the session's token issuer."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError

from shared.adapters import storage
from shared.config import Settings
from shared.emulator.issuer import Issuer
from shared.localstack.token import principal_token
from shared.services import submissions
from tests.authz.conftest import client
from tests.ingress.conftest import API, job_body
from tests.ingress.world import World, make_world

NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
SECRETS = ("sub-Sec-1f2e", "sub-Reg-3d4c", "sub-Key-5b6a", "sub-Mnt-7980", "sub-Adm-9a8b")


@pytest.fixture(scope="module")
def world(api_endpoint: dict[str, str], api_issuer: Issuer) -> World:
    return make_world(api_endpoint, api_issuer)


def _message(w: World, job: str, who: str | None, **extra: Any) -> dict[str, Any]:
    body = job_body(w.cluster_id())
    message = {"subscriptionId": w.ws.subscription, "resourceGroup": w.ws.resource_group,
               "workspace": w.ws.workspace, "experiment": "e", "jobName": job, **body, **extra}
    if who is not None:
        message["authorization"] = w.bearer(who)
    return message


def _deliver(message: dict[str, Any] | str) -> tuple[submissions.Outcome, str]:
    message_id = uuid.uuid4().hex
    text = message if isinstance(message, str) else json.dumps(message)
    return submissions.handle(Settings.from_env(), submissions.Delivery(text, message_id, NOW, 1), NOW), message_id


def _rejection(w: World, message_id: str) -> dict[str, Any]:
    path = f"/subscriptions/{w.ws.subscription}/resourceGroups/{w.ws.resource_group}/providers/Microsoft.BatchAI/" \
           f"rejectedSubmissions"
    with client(w.endpoint, w.tokens["owner"]) as owner:
        listed = owner.get(path, params=API).json()["value"]
    return next(r for r in listed if r["properties"]["messageId"] == message_id)


def _job_exists(w: World, job: str) -> bool:
    with client(w.endpoint, w.tokens["owner"]) as owner:
        return owner.get(f"{w.ws.arm_id}/experiments/e/jobs/{job}", params=API).status_code == 200


def _foreign_token(w: World, tmp_path: Path) -> str:
    """Same issuer name and tenant, another key: a forged signature."""
    forger = Issuer.load_or_create(tmp_path / "forger", w.issuer.url, w.issuer.tenant_id)
    return principal_token(forger, "submitter")


def _expired_token(w: World) -> str:
    return principal_token(w.issuer, "late", lifetime_s=600, now=time.time() - 7200)


@pytest.mark.parametrize("who, code", [
    (None, "AuthenticationFailed"), ("garbage", "AuthenticationFailed"), ("forged", "InvalidAuthenticationToken"),
    ("expired", "ExpiredAuthenticationToken"), ("reader", "AuthorizationFailed"),
    ("stranger", "AuthorizationFailed"), ("other-owner", "AuthorizationFailed"), ("submitter", None),
])
def test_a_submission_acts_for_the_principal_of_its_token(world: World, tmp_path: Path, who: str | None,
                                                          code: str | None) -> None:
    job = f"q-{uuid.uuid4().hex[:8]}"
    message = _message(world, job, who if who in world.tokens else None)
    if who == "garbage":
        message["authorization"] = "Basic dXNlcjpwYXNz"
    elif who == "forged":
        message["authorization"] = f"Bearer {_foreign_token(world, tmp_path)}"
    elif who == "expired":
        message["authorization"] = f"Bearer {_expired_token(world)}"
    outcome, message_id = _deliver(message)
    assert outcome.accepted == (code is None), outcome
    assert _job_exists(world, job) == (code is None)
    if code is not None:
        row = _rejection(world, message_id)["properties"]
        assert row["code"] == code, row
        if code == "AuthorizationFailed":
            assert "Microsoft.BatchAI/workspaces/experiments/jobs/write" in row["message"]


def test_a_refused_submission_is_recorded_without_its_token_or_secrets(world: World, storage_conn: str) -> None:
    job = f"r-{uuid.uuid4().hex[:8]}"
    message = _message(world, job, "reader", secrets=[{"name": "S", "value": SECRETS[0]}],
                       containerSettings={"imageSourceRegistry": {"image": "i", "credentials": {
                           "username": "u", "password": SECRETS[1]}}},
                       mountVolumes={"azureFileShares": [{"accountName": "a", "relativeMountPath": "s",
                                                          "azureFileUrl": "https://a.file.core.windows.net/s",
                                                          "credentials": {"accountKey": SECRETS[2]}}],
                                     "unmanagedFileSystems": [{"relativeMountPath": "u",
                                                               "mountCommand": f"mount -o pw={SECRETS[3]}"}]},
                       userAccountSettings={"adminUserPassword": SECRETS[4]}, correlationId="redacted-1")
    outcome, message_id = _deliver(message)
    assert not outcome.accepted
    listed = _rejection(world, message_id)
    text = json.dumps(listed)
    rows = json.dumps([dict(e) for e in storage.table(storage_conn, storage.T_REJECTED).list_entities()])
    for value in (*SECRETS, world.tokens["reader"]):
        assert value not in text and value not in rows
    body = json.loads(listed["properties"]["body"])
    assert body["jobName"] == job and body["correlationId"] == "redacted-1"
    assert "authorization" not in body and body["secrets"] == [{"name": "S"}]
    assert body["mountVolumes"]["unmanagedFileSystems"][0]["mountCommand"] == "<redacted>"
    assert listed["properties"]["bodyLength"] == len(json.dumps(message))


@pytest.mark.parametrize("queue", ["schedule-kicks", "node-events", "job-submissions", "node-bai0123abcd000001",
                                   "job-submissions-poison", "job-replies-", "job-replies--x", "Job-Replies",
                                   "job-replies-a\n", "replies"])
def test_replies_go_only_to_reply_queues(world: World, storage_conn: str, queue: str) -> None:
    correlation = uuid.uuid4().hex
    outcome, message_id = _deliver(_message(world, "x", None, replyTo=queue, correlationId=correlation))
    assert not outcome.accepted
    assert _rejection(world, message_id)["properties"]["code"] == "InvalidReplyQueue"
    if queue.startswith("node-bai"):  # a node's queue that does not exist was not created for a reply
        with pytest.raises(ResourceNotFoundError):
            storage.queue(storage_conn, queue).get_queue_properties()


def test_a_reply_queue_gets_the_outcome(world: World, storage_conn: str) -> None:
    correlation = uuid.uuid4().hex
    queue = f"job-replies-{correlation[:8]}"
    outcome, _ = _deliver(_message(world, "y", "stranger", replyTo=queue, correlationId=correlation))
    assert not outcome.accepted
    (reply,) = storage.queue(storage_conn, queue).receive_messages(max_messages=5)
    content = json.loads(reply.content)
    assert content["outcome"] == "rejected" and content["correlationId"] == correlation
    assert content["reason"]["code"] == "AuthorizationFailed"
