"""Commands run on a node through its agent (`batchai cluster node exec` / `job node exec` on nodes that
have no sshd to log in to: local processes). Owns table `nodeexecs`: one row per request, PartitionKey the
cluster key, RowKey the request id; `nodeId`, `jobKey` (a job's environment on that node, or ""),
`command` (sealed: a command line may carry secrets), `caller` (the object id of who asked: only they
read the result), `status` (InProgress | Succeeded | Failed), `exitCode`, `stdout`, `stderr` (the
last `OUTPUT_LIMIT` characters of each), `error`, `createdAt`, `finishedAt`.

The API records the request and puts a signed ``exec`` message on the node's queue (the caller's
right to do so, the cluster's or job's `remoteLoginInformation/action`, is checked by the API's rule
table); the agent fetches the command from ``POST /nodeagent/exec`` and answers with
``POST /nodeagent/exec-result``. A request's result is written once: a repeated answer (an
at-least-once message run twice) changes nothing.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from shared import ports
from shared.adapters import secret_box, storage
from shared.config import Settings
from shared.domain import validation
from shared.domain.errors import ApiError, bad_request, conflict, not_found
from shared.domain.keys import ClusterRef, JobRef
from shared.domain.messages import ExecCommand
from shared.ports.contract import Table
from shared.ports.rows import Insert, Row, StaleEtag, key_fields, merge
from shared.services import nodes
from shared.services.assignments import send_to_node
from shared.services.clusters import get_doc as cluster_doc
from shared.services.jobs import get_doc as job_doc
from shared.services.node_credentials import authenticate, forbidden
from shared.services.node_state import node_jobs

IN_PROGRESS, SUCCEEDED, FAILED = "InProgress", "Succeeded", "Failed"
OUTPUT_LIMIT = 30_000  # characters kept of each stream (a table property holds 32 K UTF-16 characters)
COMMAND_LIMIT = 8_192
TIMEOUT_DEFAULT_S, TIMEOUT_MAX_S = 600, 3_600
LIVE_STATES = frozenset({"idle", "running", "preparing"})
ANSWER_GRACE_S = 60  # beyond a command's timeout: the agent's own time to report it


def _table(settings: Settings) -> Table:
    return ports.of(settings.storage_connection_string).table(storage.T_NODE_EXECS)


def _request(body: Any) -> tuple[str, int]:
    if not isinstance(body, Mapping):
        raise bad_request("The request body must be a JSON object.")
    command = body.get("command")
    if not isinstance(command, str) or not command.strip() or len(command) > COMMAND_LIMIT:
        raise bad_request(f"'command' must be a non-empty string of at most {COMMAND_LIMIT} characters.", "command")
    timeout = body.get("timeoutSeconds", TIMEOUT_DEFAULT_S)
    if not isinstance(timeout, int) or isinstance(timeout, bool) or not 1 <= timeout <= TIMEOUT_MAX_S:
        raise bad_request(f"'timeoutSeconds' must be an integer from 1 to {TIMEOUT_MAX_S}.", "timeoutSeconds")
    return command, timeout


def _live_node(settings: Settings, cluster: ClusterRef, node_id: str) -> dict[str, Any]:
    row = nodes.get_node(settings, cluster.key, node_id)
    if row is None:
        raise ApiError(404, "NodeNotFound", f"The node '{node_id}' is not a node of cluster '{cluster.name}'.", node_id)
    if row["state"] not in LIVE_STATES:
        raise conflict(f"The node '{node_id}' is {row['state']}: it runs no commands.", "NodeNotAvailable")
    return row


def _cluster_of(settings: Settings, target: ClusterRef | JobRef) -> ClusterRef:
    if isinstance(target, JobRef):
        return ClusterRef.from_key(job_doc(settings, target).data["internal"]["clusterKey"])
    if cluster_doc(settings, target) is None:
        raise not_found("cluster", target.name)
    return target


def start(settings: Settings, caller: str, target: ClusterRef | JobRef, node_id: str, body: Any,
          now: datetime) -> dict[str, Any]:
    """Record a request to run `body["command"]` on a node of the cluster (in the job's environment there,
    when `target` is a job) and send it to the node."""
    command, timeout = _request(body)
    validation.check_name("nodeId", node_id)
    cluster = _cluster_of(settings, target)
    row = _live_node(settings, cluster, node_id)
    job_key = target.key if isinstance(target, JobRef) else ""
    if job_key and job_key not in node_jobs(row):
        raise conflict(f"The job '{target.name}' does not run on node '{node_id}'.", "JobNotRunningOnNode")
    exec_id = uuid.uuid4().hex
    entity = {"PartitionKey": cluster.key, "RowKey": exec_id, "nodeId": node_id, "jobKey": job_key,
              "command": secret_box.secret_box(settings).seal(command), "timeoutSeconds": timeout, "caller": caller,
              "status": IN_PROGRESS, "createdAt": now.isoformat()}
    _table(settings).write(Insert(*key_fields(entity)))
    send_to_node(settings, node_id, ExecCommand(exec_id))
    return render(entity)


def get(settings: Settings, caller: str, target: ClusterRef | JobRef, node_id: str, exec_id: str,
        now: datetime | None = None) -> dict[str, Any]:
    """A request's status and result, for the caller that made it (anyone else: not found). A request
    that can no longer be answered (its node is gone or lost, or its time and `ANSWER_GRACE_S` ran out)
    is failed here, once, so that a caller polling it always sees an end."""
    cluster = _cluster_of(settings, target)
    entity = _entity(settings, cluster.key, exec_id)
    job_key = target.key if isinstance(target, JobRef) else ""
    if entity is None or (entity["caller"], entity["nodeId"], entity["jobKey"]) != (caller, node_id, job_key):
        raise ApiError(404, "ResourceNotFound", f"The command '{exec_id}' was not found.", exec_id)
    if entity["status"] == IN_PROGRESS:
        entity = _unanswerable(settings, cluster, entity, now or datetime.now(UTC)) or entity
    return render(entity)


def _unanswerable(settings: Settings, cluster: ClusterRef, entity: Row, now: datetime) -> Row | None:
    """The request failed (as stored: an answer that came first stands), when no answer can come now."""
    row = nodes.get_node(settings, cluster.key, entity["nodeId"])
    deadline = datetime.fromisoformat(entity["createdAt"]) + timedelta(
        seconds=int(entity["timeoutSeconds"]) + ANSWER_GRACE_S)
    if row is None or row["state"] == "lost":
        error = {"code": "NodeLost", "message": f"The node '{entity['nodeId']}' is gone; the command has no answer."}
    elif now > deadline:
        error = {"code": "ExecTimedOut", "message": f"The node '{entity['nodeId']}' did not answer within "
                                                    f"{entity['timeoutSeconds']} s and {ANSWER_GRACE_S} s more."}
    else:
        return None
    fields = {"status": FAILED, "finishedAt": now.isoformat(), "error": json.dumps(error)}
    with contextlib.suppress(StaleEtag):  # the node answered meanwhile: its answer stands
        _table(settings).write(merge(entity, fields))
    return _entity(settings, cluster.key, entity["RowKey"])


def render(entity: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": entity["RowKey"], "nodeId": entity["nodeId"], "status": entity["status"],
                           "createdAt": entity["createdAt"]}
    if entity["status"] != IN_PROGRESS:
        out.update(exitCode=entity.get("exitCode"), stdout=entity.get("stdout") or "",
                   stderr=entity.get("stderr") or "", finishedAt=entity.get("finishedAt"))
        if entity.get("error"):
            out["error"] = json.loads(entity["error"])
    return out


def _entity(settings: Settings, cluster_key: str, exec_id: str) -> Row | None:
    """The request's row (with its ETag), or None."""
    return _table(settings).get(cluster_key, exec_id)


def _node_request(settings: Settings, authorization: str | None, body: Any) -> Row:
    """The request a node asks about (a row, with its ETag), when it is this node's."""
    node = authenticate(settings, authorization, body)
    exec_id = body.get("execId")
    if not isinstance(exec_id, str) or not exec_id:
        raise bad_request("'execId' must be a non-empty string.", "execId")
    entity = _table(settings).get(node.cluster_key, exec_id)
    if entity is None:
        raise ApiError(404, "ExecNotFound", f"There is no command '{exec_id}' for this cluster.")
    if entity["nodeId"] != node.node_id:
        raise forbidden(f"The command '{exec_id}' is for another node.")
    return entity


def payload(settings: Settings, authorization: str | None, body: Any) -> dict[str, Any]:
    """``POST /nodeagent/exec``: the command a node was sent, while it is still to be run (else 409)."""
    entity = _node_request(settings, authorization, body)
    if entity["status"] != IN_PROGRESS:
        raise conflict(f"The command '{entity['RowKey']}' has been answered already.", "ExecAnswered")
    return {"execId": entity["RowKey"], "command": secret_box.secret_box(settings).open(entity["command"]),
            "jobKey": entity["jobKey"], "timeoutSeconds": int(entity["timeoutSeconds"])}


def answer(settings: Settings, authorization: str | None, body: Any, now: datetime) -> dict[str, Any]:
    """``POST /nodeagent/exec-result``: the node's answer (exitCode, stdout, stderr, or an error); the first wins."""
    current = _node_request(settings, authorization, body)
    if current["status"] != IN_PROGRESS:
        return {"status": current["status"]}
    code, error = body.get("exitCode"), body.get("error")
    fields: dict[str, Any] = {"finishedAt": now.isoformat(), "stdout": _tail(body.get("stdout")),
                              "stderr": _tail(body.get("stderr"))}
    if isinstance(code, int) and not isinstance(code, bool):
        fields.update(status=SUCCEEDED, exitCode=code)
    else:
        message = error.get("message") if isinstance(error, Mapping) else error
        fields.update(status=FAILED, error=json.dumps({"code": "ExecFailed", "message": str(message)[:2000]}))
    with contextlib.suppress(StaleEtag):  # another delivery answered first: its answer stands
        _table(settings).write(merge(current, fields))
    return {"status": fields["status"]}


def _tail(value: Any) -> str:
    text = value if isinstance(value, str) else ""
    return text[-OUTPUT_LIMIT:]
