"""Job submissions from other systems (queue `job-submissions` in the data account): create the job
as the API would, for the principal that submitted it, record refusals, and publish outcomes to the
submitter's reply queue.

Owns the tables `rejectedsubmissions` (one row per refused message: "{sub}|{rg}" / "{inserted}-{message
id}") and `submissions` (one row per accepted submission that asked for replies, until its job's
end was published: job partition / job name).

A message is JSON: a JobCreateParameters body (``properties``) plus ``workspace``, ``experiment``,
``jobName`` (or ``name``), optional ``subscriptionId``, ``resourceGroup`` (the local stack's when
absent), ``replyTo`` and ``correlationId``, and ``authorization``: the submitter's ``Bearer <token>``,
validated exactly as the API validates tokens; that principal must hold `SUBMIT_ACTION` on the
workspace. The job is created by `jobs.create`, so the same validation applies and a redelivered
message finds the job it created (create-or-match by name). Replies go only to reply queues of the
data account: ``job-replies`` or ``job-replies-<suffix>`` (`REPLY_QUEUE_RE`), never a queue of the
service. Refusals (the caller's fault: bad JSON, no or bad token, missing role, unknown workspace,
invalid job) are permanent: recorded, redacted (no token, no secret value, no mount command), and the
message completes. Anything else raises, and the queue retries it (poison after 5 tries). Replies
are at-least-once: a crash between sending and recording may send one twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared import ports
from shared.adapters import storage
from shared.adapters.resource_store import encode_token
from shared.config import Settings
from shared.domain import resources, states, validation
from shared.domain.errors import ApiError
from shared.domain.keys import PROVIDER, JobRef, WorkspaceRef
from shared.ports.contract import Table
from shared.ports.rows import Insert, Query, Row, StaleEtag, Upsert, delete, merge
from shared.services import jobs
from shared.services.api_common import Page, store, table_token
from shared.services.guarded import each

REPLY_QUEUE_RE = re.compile(r"job-replies(?:-[a-z0-9]+){0,10}")
MAX_QUEUE_NAME = 63
MAX_RECORDED_BODY = 30_000
MAX_RECORDED_FIELD = 1024
T_REJECTED_TYPE = f"{PROVIDER}/rejectedSubmissions"
AUTHORIZATION_FIELD = "authorization"
TOKEN_FIELDS = frozenset({AUTHORIZATION_FIELD, "token", "accesstoken", "access_token", "bearer"})
SUBMIT_ACTION = f"{PROVIDER}/workspaces/experiments/jobs/write"
DEFAULT_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"  # the local stack's
DEFAULT_RESOURCE_GROUP = "demo"


def defaults() -> tuple[str, str]:
    """The subscription and resource group of a message that names none."""
    return (os.environ.get("BATCHAI_DEFAULT_SUBSCRIPTION", DEFAULT_SUBSCRIPTION),
            os.environ.get("BATCHAI_DEFAULT_RESOURCE_GROUP", DEFAULT_RESOURCE_GROUP))


@dataclass(frozen=True)
class Delivery:
    """One delivery of a queue message, as the trigger saw it."""
    body: str
    message_id: str
    inserted: datetime
    dequeue_count: int


@dataclass(frozen=True)
class Outcome:
    accepted: bool
    job: JobRef | None = None
    reason: str | None = None


class Refused(Exception):
    def __init__(self, code: str, message: str, target: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.target = code, message, target


def _field(d: dict[str, Any], *names: str) -> str:
    for name in names:
        value = d.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    raise Refused("MissingField", f"The message has no '{names[0]}'.", names[0])


def _job_ref(d: dict[str, Any]) -> JobRef:
    sub, rg = defaults()
    ws = WorkspaceRef(str(d.get("subscriptionId") or sub), str(d.get("resourceGroup") or rg), _field(d, "workspace"))
    ref = ws.experiment(_field(d, "experiment")).job(_field(d, "jobName", "name"))
    try:
        validation.check_subscription(ws.subscription)
        validation.check_name("resourceGroup", ws.resource_group)
        validation.check_name("workspace", ws.workspace)
        validation.check_name("experiment", ref.experiment.name)
        validation.check_name("jobName", ref.name)
    except ApiError as e:
        raise Refused(e.code, e.message, e.target) from e
    return ref


def _reply_to(d: dict[str, Any]) -> str | None:
    value = d.get("replyTo")
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_QUEUE_NAME or not REPLY_QUEUE_RE.fullmatch(value):
        raise Refused("InvalidReplyQueue", f"'replyTo' must name a reply queue: 'job-replies' or "
                                           f"'job-replies-<lower-case letters and digits>', not {str(value)[:80]!r}.",
                      "replyTo")
    return value


def send_reply(settings: Settings, queue: str, reply: dict[str, Any]) -> None:
    ports.of(settings.data_connection).queues.send(queue, json.dumps(reply), create=True)


def _submitter(settings: Settings, d: dict[str, Any]) -> Any:
    """The principal the message's token proves; Refused with ARM's 401 code otherwise."""
    from shared.services import authorization

    token = d.get(AUTHORIZATION_FIELD)
    try:
        return authorization.authenticate(settings, token if isinstance(token, str) else None)
    except ApiError as e:
        if e.status >= 500:
            raise
        raise Refused(e.code, e.message, AUTHORIZATION_FIELD) from None


def _authorize(settings: Settings, principal: Any, ref: JobRef) -> None:
    from shared.services import authorization

    try:
        authorization.require(settings, principal, SUBMIT_ACTION, ref.experiment.workspace.arm_id)
    except ApiError as e:
        if e.status >= 500:
            raise
        raise Refused(e.code, e.message) from None


def _job_info(ref: JobRef) -> dict[str, str]:
    ws = ref.experiment.workspace
    return {"id": ref.arm_id, "workspace": ws.workspace, "experiment": ref.experiment.name, "name": ref.name}


def handle(settings: Settings, delivery: Delivery, now: datetime) -> Outcome:
    """Create the submitted job, or record why not. Raises only on transient failures."""
    d: dict[str, Any] = {}
    reply_to: str | None = None
    ref: JobRef | None = None
    try:
        try:
            parsed = json.loads(delivery.body)
        except ValueError as e:
            raise Refused("InvalidJson", f"The message is not valid JSON: {e}.") from e
        if not isinstance(parsed, dict):
            raise Refused("InvalidJson", "The message must be a JSON object.")
        d = parsed
        reply_to = _reply_to(d)
        principal = _submitter(settings, d)
        ref = _job_ref(d)
        _authorize(settings, principal, ref)
        body = {"properties": d.get("properties")} if "properties" in d else d.get("job")
        try:
            jobs.create(settings, ref, body)
        except ApiError as e:
            if e.status >= 500:
                raise
            raise Refused(e.code, e.message, e.target) from e
    except Refused as r:
        _record_rejection(settings, delivery, d, ref, r, now)
        if reply_to:
            send_reply(settings, reply_to, {"outcome": "rejected", "correlationId": d.get("correlationId"),
                                            "job": _job_info(ref) if ref else None,
                                            "reason": {"code": r.code, "message": r.message},
                                            "at": resources.iso(now)})
        return Outcome(False, ref, r.message)
    if reply_to:
        _accepted(settings, ref, reply_to, d.get("correlationId"), now)
    return Outcome(True, ref)


def redacted_body(d: dict[str, Any]) -> str:
    """What is kept of a refused message: its JSON without tokens, secret values or mount commands."""
    kept = {k: v for k, v in d.items() if k.lower() not in TOKEN_FIELDS}
    return json.dumps(resources.redact(kept))[:MAX_RECORDED_BODY]


def _partition(d: dict[str, Any], ref: JobRef | None) -> str:
    """Where a refusal is listed: the message's resource group when it names a valid one, else the default."""
    if ref is not None:
        return ref.experiment.workspace.pk
    sub, rg = defaults()
    sub, rg = str(d.get("subscriptionId") or sub), str(d.get("resourceGroup") or rg)
    try:
        validation.check_subscription(sub)
        validation.check_name("resourceGroup", rg)
    except ApiError:
        sub, rg = defaults()
    return WorkspaceRef(sub, rg, "-").pk


def _text(d: dict[str, Any], *names: str) -> str:
    return next((str(d[n])[:MAX_RECORDED_FIELD] for n in names if d.get(n)), "")


def _record_rejection(settings: Settings, delivery: Delivery, d: dict[str, Any], ref: JobRef | None, r: Refused,
                      now: datetime) -> None:
    row = f"{delivery.inserted.strftime('%Y%m%dT%H%M%S%fZ')}-{delivery.message_id}"
    _table(settings, storage.T_REJECTED).write(Upsert(_partition(d, ref), row, {
        "code": r.code, "message": r.message,
        "target": r.target or "", "messageId": delivery.message_id, "insertionTime": resources.iso(delivery.inserted),
        "dequeueCount": delivery.dequeue_count, "recordedAt": resources.iso(now),
        "workspace": _text(d, "workspace"), "experiment": _text(d, "experiment"),
        "jobName": _text(d, "jobName", "name"), "correlationId": _text(d, "correlationId"),
        "replyTo": _text(d, "replyTo"), "bodyLength": len(delivery.body),
        "body": redacted_body(d) if d else ""}))


def _table(settings: Settings, name: str) -> Table:
    return ports.of(settings.storage_connection_string).table(name)


def _accepted(settings: Settings, ref: JobRef, reply_to: str, correlation: Any, now: datetime) -> None:
    """Remember the submission for its finished reply, and send the accepted reply once it is remembered."""
    table = _table(settings, storage.T_SUBMISSIONS)
    pk, rk = ref.experiment.job_pk, ref.name.lower()
    with contextlib.suppress(StaleEtag):  # remembered by an earlier delivery
        table.write(Insert(pk, rk, {"replyTo": reply_to, "correlationId": json.dumps(correlation),
                                    "acceptedSent": False}))
    row = table.get(pk, rk)
    if row is None or row.get("acceptedSent"):  # gone: its finished reply went, after the accepted one
        return
    send_reply(settings, reply_to, {"outcome": "accepted", "correlationId": correlation, "job": _job_info(ref),
                                    "at": resources.iso(now)})
    table.write(merge(row, {"acceptedSent": True}))


def reconcile_replies(settings: Settings, now: datetime) -> int:
    """Publish the finished reply of every remembered submission whose job ended; the number sent.
    Each submission is guarded: one that fails never stalls the others (raised after the tick)."""
    table = _table(settings, storage.T_SUBMISSIONS)
    return sum(each(list(table.query(Query())), lambda row: _reply_if_finished(settings, table, row, now),
                    "submission reply"))


def _reply_if_finished(settings: Settings, table: Table, row: Row, now: datetime) -> int:
    ref = JobRef.from_key(f"{row['PartitionKey']}|{row['RowKey']}")
    doc = store(settings, storage.T_JOBS).get(ref.experiment.job_pk, ref.name.lower())
    reply: dict[str, Any] = {"outcome": "finished", "correlationId": json.loads(row["correlationId"]),
                             "job": _job_info(ref), "at": resources.iso(now)}
    if doc is None:
        reply["executionState"] = "deleted"
    elif states.JobPhase(doc.data["internal"].get("phase")) in states.JOB_TERMINAL:
        props = resources.render_job(doc.data)["properties"]
        info = props.get("executionInfo") or {}
        reply.update(executionState=props["executionState"], exitCode=info.get("exitCode"),
                     errors=info.get("errors") or [])
    else:
        return 0
    if not row.get("acceptedSent"):
        return 0  # the accepted reply goes first (the message handler is still on it)
    send_reply(settings, row["replyTo"], reply)
    with contextlib.suppress(StaleEtag):  # removed by another tick meanwhile
        table.write(delete(row))
    return 1


def _render_rejection(e: Row) -> dict[str, Any]:
    sub, rg = e["PartitionKey"].split("|")
    props = {k: e.get(k) for k in ("code", "message", "target", "messageId", "insertionTime", "dequeueCount",
                                   "recordedAt", "workspace", "experiment", "jobName", "correlationId", "replyTo",
                                   "bodyLength", "body")}
    return {"id": f"/subscriptions/{sub}/resourceGroups/{rg}/providers/{PROVIDER}/rejectedSubmissions/{e['RowKey']}",
            "name": e["RowKey"], "type": T_REJECTED_TYPE, "properties": props}


def list_rejected(settings: Settings, subscription: str, resource_group: str, size: int,
                  token: str | None) -> Page:
    pk = WorkspaceRef(subscription, resource_group, "-").pk
    rows, after = _table(settings, storage.T_REJECTED).page(Query(pk=pk), size, table_token(token))
    return Page([_render_rejection(e) for e in rows], encode_token(after))
