"""The submission service against Azurite, called directly: refusals are recorded once per message
(a redelivery overwrites its own row), with the reason, and listed by resource group."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from shared.config import Settings
from shared.services import submissions

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_refusals_are_recorded_once_per_message_with_the_reason(storage_conn: str,
                                                                api_endpoint: dict[str, str]) -> None:
    settings = Settings.from_env()
    sub, rg = submissions.defaults()
    props = {"cluster": {"id": f"/subscriptions/{sub}/resourceGroups/demo/providers/Microsoft.BatchAI/workspaces"
                                "/nows/clusters/c"}, "stdOutErrPathPrefix": "x",
             "customToolkitSettings": {"commandLine": "true"}}
    message = {"workspace": "nows", "experiment": "e", "jobName": "j", "properties": props,
               "authorization": f"Bearer {api_endpoint['token']}"}
    body = json.dumps(message)
    first = submissions.Delivery(body, "msg-1", NOW, 1)
    outcome = submissions.handle(settings, first, NOW)
    assert not outcome.accepted and "workspace nows is not found" in (outcome.reason or "")
    submissions.handle(settings, submissions.Delivery(body, "msg-1", NOW, 2), NOW)  # a redelivery
    missing = submissions.handle(settings, submissions.Delivery(json.dumps(
        {"experiment": "e", "authorization": message["authorization"]}), "msg-2", NOW, 1), NOW)
    assert missing.reason == "The message has no 'workspace'."
    bad_reply = submissions.handle(settings, submissions.Delivery(json.dumps({"replyTo": "Bad_Queue"}), "msg-3",
                                                                  NOW, 1), NOW)
    assert "must name a reply queue" in (bad_reply.reason or "")
    rows = {r["properties"]["messageId"]: r for r in submissions.list_rejected(settings, sub, rg, 100, None).items}
    assert {"msg-1", "msg-2", "msg-3"} <= set(rows)
    assert rows["msg-1"]["properties"]["dequeueCount"] == 2  # one row per message, the last delivery's
    assert rows["msg-1"]["properties"]["code"] == "WorkspaceNotFound"
    kept = json.loads(rows["msg-1"]["properties"]["body"])
    assert kept == {k: v for k, v in message.items() if k != "authorization"}  # the token is not kept
    assert rows["msg-1"]["id"].startswith(f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.BatchAI/")
