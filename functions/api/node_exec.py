"""Node exec routes (an addition beyond 2018-05-01): run a command on a node through its agent, for nodes
that have no sshd to log in to (local processes), and read its result.

`POST .../clusters/{c}/nodes/{nodeId}/exec` and `POST .../jobs/{j}/nodes/{nodeId}/exec` (in the job's
environment on that node) take `{"command", "timeoutSeconds"}` and answer 202 with the request and a
`Location` to poll; `GET .../nodes/{nodeId}/execs/{execId}` answers its status and, once the node
answered, `exitCode`, `stdout` and `stderr`. Allowed to callers with the cluster's (or the job's)
`remoteLoginInformation/action`, as logging in to the node is; a result is read only by its caller.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from functions.api.clusters import CLUSTER
from functions.api.common import JOB, JsonBody, cluster_ref, job_ref, settings
from shared.domain.contract import API_VERSION
from shared.services import node_exec
from shared.services.api_common import utcnow

router = APIRouter()
CLUSTER_EXEC = CLUSTER + "/nodes/{nodeId}/exec"
CLUSTER_EXEC_RESULT = CLUSTER + "/nodes/{nodeId}/execs/{execId}"
JOB_EXEC = JOB + "/nodes/{nodeId}/exec"
JOB_EXEC_RESULT = JOB + "/nodes/{nodeId}/execs/{execId}"


def _accepted(request: Request, started: dict[str, Any]) -> JSONResponse:
    base = request.url.path.rsplit("/", 1)[0]
    location = str(request.url.replace(path=f"{base}/execs/{started['name']}", query=f"api-version={API_VERSION}"))
    return JSONResponse(started, status_code=202, headers={"Location": location, "Retry-After": "1"})


@router.post(CLUSTER_EXEC)
def cluster_exec(request: Request, subscriptionId: str, resourceGroupName: str, workspaceName: str,
                 clusterName: str, nodeId: str, body: JsonBody) -> JSONResponse:
    ref = cluster_ref(subscriptionId, resourceGroupName, workspaceName, clusterName)
    return _accepted(request, node_exec.start(settings(), request.state.principal.object_id, ref, nodeId, body,
                                              utcnow()))


@router.get(CLUSTER_EXEC_RESULT)
def cluster_exec_result(request: Request, subscriptionId: str, resourceGroupName: str, workspaceName: str,
                        clusterName: str, nodeId: str, execId: str) -> dict[str, Any]:
    ref = cluster_ref(subscriptionId, resourceGroupName, workspaceName, clusterName)
    return node_exec.get(settings(), request.state.principal.object_id, ref, nodeId, execId)


@router.post(JOB_EXEC)
def job_exec(request: Request, subscriptionId: str, resourceGroupName: str, workspaceName: str,
             experimentName: str, jobName: str, nodeId: str, body: JsonBody) -> JSONResponse:
    ref = job_ref(subscriptionId, resourceGroupName, workspaceName, experimentName, jobName)
    return _accepted(request, node_exec.start(settings(), request.state.principal.object_id, ref, nodeId, body,
                                              utcnow()))


@router.get(JOB_EXEC_RESULT)
def job_exec_result(request: Request, subscriptionId: str, resourceGroupName: str, workspaceName: str,
                    experimentName: str, jobName: str, nodeId: str, execId: str) -> dict[str, Any]:
    ref = job_ref(subscriptionId, resourceGroupName, workspaceName, experimentName, jobName)
    return node_exec.get(settings(), request.state.principal.object_id, ref, nodeId, execId)
