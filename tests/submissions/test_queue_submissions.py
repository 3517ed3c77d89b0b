"""Job submissions on the `job-submissions` queue, through the local trigger host: accepted jobs
run, refused messages are recorded once with their reason and completed (never retried into the
poison queue), and outcomes reach the submitter's reply queue (accepted, rejected, finished)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from azure.storage.queue import QueueClient

from shared.adapters import storage
from tests.e2e.conftest import wait_until
from tests.scoring.conftest import ScoringStack
from tests.submissions.conftest import CLUSTER, EXP, WS

pytestmark = pytest.mark.slow


def _message(s: ScoringStack, job: str, command: str = "echo from-the-queue", **extra: Any) -> dict[str, Any]:
    return {"workspace": WS, "experiment": EXP, "jobName": job, "authorization": f"Bearer {s.endpoint['token']}",
            "properties": {"cluster": {"id": s.cluster_id(WS, CLUSTER)},
                           "stdOutErrPathPrefix": "$AZ_BATCHAI_MOUNT_ROOT/l",
                           "customToolkitSettings": {"commandLine": command}}, **extra}


def _conn(s: ScoringStack) -> str:
    return s.endpoint["storage_connection_string"]


def _replies(s: ScoringStack, queue: str, count: int) -> list[dict[str, Any]]:
    client = storage.queue(_conn(s), queue)
    got: list[dict[str, Any]] = []

    def enough() -> bool:
        for m in client.receive_messages(messages_per_page=32, visibility_timeout=60):
            got.append(json.loads(m.content))
            client.delete_message(m)
        return len(got) >= count
    wait_until(enough, 120, interval=0.3, what=f"{count} replies on {queue}")
    return got


def _wait_job(s: ScoringStack, name: str) -> Any:
    """The job once the submission created it and it ended."""
    def created() -> bool:
        return any(j.name == name for j in s.client.jobs.list_by_experiment(s.rg, WS, EXP))
    wait_until(created, 60, interval=0.3, what=f"job {name} to be created from the queue")
    return s.wait_job(WS, EXP, name)


def _rejections(s: ScoringStack) -> list[dict[str, Any]]:
    path = f"/subscriptions/{s.sub}/resourceGroups/{s.rg}/providers/Microsoft.BatchAI/rejectedSubmissions"
    r = s.api(path)
    assert r.status_code == 200, r.text
    return r.json()["value"]


def test_valid_base64_message_runs_its_job_and_replies_accepted_then_finished(subs_stack: ScoringStack) -> None:
    s = subs_stack
    storage.queue(_conn(s), storage.Q_SUBMISSIONS).send_message(json.dumps(
        _message(s, "fromqueue", "echo scored; exit 0", replyTo="job-replies-ok", correlationId="corr-1")))
    job = _wait_job(s, "fromqueue")
    assert job.execution_state == "succeeded"
    assert "scored" in s.download(s.output_files(WS, EXP, "fromqueue")["stdout.txt"].download_url)
    accepted, finished = _replies(s, "job-replies-ok", 2)
    assert accepted["outcome"] == "accepted" and accepted["correlationId"] == "corr-1"
    assert accepted["job"]["id"].endswith(f"/experiments/{EXP}/jobs/fromqueue")
    assert finished["outcome"] == "finished" and finished["correlationId"] == "corr-1"
    assert finished["executionState"] == "succeeded" and finished["exitCode"] == 0


def test_plain_text_message_is_accepted_and_the_finished_reply_carries_the_failure(subs_stack: ScoringStack) -> None:
    s = subs_stack
    plain = QueueClient.from_connection_string(_conn(s), storage.Q_SUBMISSIONS)  # no base64 policy: raw text
    plain.send_message(json.dumps(_message(s, "plaintext", "exit 4", replyTo="job-replies-plain", correlationId=7)))
    job = _wait_job(s, "plaintext")
    assert job.execution_state == "failed" and job.execution_info.exit_code == 4
    accepted, finished = _replies(s, "job-replies-plain", 2)
    assert (accepted["outcome"], finished["outcome"]) == ("accepted", "finished")
    assert finished["correlationId"] == 7 and finished["executionState"] == "failed" and finished["exitCode"] == 4


@pytest.mark.parametrize("case, body, code, reason", [
    ("unknown workspace", lambda s: _message(s, "x1", workspace="nosuchws"), "WorkspaceNotFound",
     "workspace nosuchws is not found"),
    ("no toolkit", lambda s: {**_message(s, "x2"), "properties": {
        "cluster": {"id": s.cluster_id(WS, CLUSTER)}, "stdOutErrPathPrefix": "x"}}, "InvalidRequestContent",
     "exactly one toolkit"),
    ("not json", lambda s: "{this is not json", "InvalidJson", "not valid JSON"),
])
def test_invalid_message_is_rejected_once_with_a_queryable_reason(subs_stack: ScoringStack, case: str, body: Any,
                                                                   code: str, reason: str) -> None:
    s = subs_stack
    payload = body(s)
    text = payload if isinstance(payload, str) else json.dumps({**payload, "replyTo": f"job-replies-{code.lower()}",
                                                                "correlationId": case})
    sent = storage.queue(_conn(s), storage.Q_SUBMISSIONS).send_message(text)

    def recorded() -> dict[str, Any] | None:
        return next((r for r in _rejections(s) if r["properties"]["messageId"] == sent.id), None)
    row = wait_until(recorded, 60, interval=0.3, what=f"the rejection of {case}")["properties"]
    assert row["code"] == code, row
    assert reason.lower() in row["message"].lower(), row
    assert row["dequeueCount"] == 1
    queue = storage.queue(_conn(s), storage.Q_SUBMISSIONS)
    wait_until(lambda: queue.get_queue_properties().approximate_message_count == 0, 30,
               what="the refused message to be completed")
    poison = storage.queue(_conn(s), f"{storage.Q_SUBMISSIONS}-poison")
    assert not [m for m in poison.peek_messages(max_messages=32) if m.id == sent.id]
    again = next(r for r in _rejections(s) if r["properties"]["messageId"] == sent.id)["properties"]
    assert again["dequeueCount"] == 1  # recorded by its only delivery
    if not isinstance(payload, str):
        (reply,) = _replies(s, f"job-replies-{code.lower()}", 1)
        assert reply["outcome"] == "rejected" and reply["correlationId"] == case
        assert reply["reason"]["code"] == code
