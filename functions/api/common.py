"""What every route shares: settings, name checks, the JSON body, paging and ARM responses."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import JSONResponse, Response

from shared.config import Settings
from shared.domain import validation
from shared.domain.contract import API_VERSION
from shared.domain.errors import ApiError, bad_request
from shared.domain.keys import PROVIDER, ClusterRef, ExperimentRef, JobRef, WorkspaceRef
from shared.services import authorization
from shared.services.api_common import Accepted, Page, Rendered

MAX_BODY_BYTES = 256 * 1024  # a resource document must fit one Table entity (1 MiB of UTF-16 text)
RETRY_AFTER_S = "1"

SUB = "/subscriptions/{subscriptionId}"
RG = SUB + "/resourceGroups/{resourceGroupName}"
WS = RG + f"/providers/{PROVIDER}/workspaces/{{workspaceName}}"
EXP = WS + "/experiments/{experimentName}"
JOB = EXP + "/jobs/{jobName}"


def settings() -> Settings:
    return Settings.from_env()


def workspace_ref(subscriptionId: str, resourceGroupName: str, workspaceName: str) -> WorkspaceRef:
    validation.check_name("resourceGroupName", resourceGroupName)
    validation.check_name("workspaceName", workspaceName)
    return WorkspaceRef(subscriptionId, resourceGroupName, workspaceName)


def experiment_ref(subscriptionId: str, resourceGroupName: str, workspaceName: str,
                   experimentName: str) -> ExperimentRef:
    validation.check_name("experimentName", experimentName)
    return workspace_ref(subscriptionId, resourceGroupName, workspaceName).experiment(experimentName)


def job_ref(subscriptionId: str, resourceGroupName: str, workspaceName: str, experimentName: str,
            jobName: str) -> JobRef:
    validation.check_name("jobName", jobName)
    return experiment_ref(subscriptionId, resourceGroupName, workspaceName, experimentName).job(jobName)


def cluster_ref(subscriptionId: str, resourceGroupName: str, workspaceName: str, clusterName: str) -> ClusterRef:
    validation.check_name("clusterName", clusterName)
    return workspace_ref(subscriptionId, resourceGroupName, workspaceName).cluster(clusterName)


async def json_body(request: Request) -> Any:
    """The parsed JSON body (None when empty); 413 over MAX_BODY_BYTES (read no further), 400 when not JSON."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise too_large(size, at_least=True)
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise bad_request(f"The request body is not valid JSON: {e}.", "body", code="InvalidJson") from e


def too_large(size: int, at_least: bool = False) -> ApiError:
    return ApiError(413, "RequestEntityTooLarge",
                    f"The request body is {'at least ' if at_least else ''}{size} bytes; the limit is {MAX_BODY_BYTES} "
                    f"bytes (256 KiB).", "body")


def if_match(request: Request) -> str | None:
    return request.headers.get("if-match")


def max_results(request: Request) -> int:
    return validation.max_results(request.query_params.get("maxresults"))


def skiptoken(request: Request) -> str | None:
    return request.query_params.get("$skiptoken") or None


def resource(rendered: Rendered) -> JSONResponse:
    headers = {"ETag": rendered.etag} if rendered.etag else {}
    return JSONResponse(rendered.body, status_code=rendered.status, headers=headers)


def page(request: Request, result: Page) -> dict[str, Any]:
    """One page of a list, holding only the items the caller may read (the route's access rule decides)."""
    body: dict[str, Any] = {"value": request.state.visible(result.items)}
    if result.next_token:
        params = dict(request.query_params)
        params["$skiptoken"] = result.next_token
        params["api-version"] = API_VERSION
        body["nextLink"] = str(request.url.replace_query_params(**params))
    return body


def operation_url(request: Request, subscription: str, op_id: str, location: str,
                  kind: str = "operationresults") -> str:
    """Where an operation is polled: `operationresults` (Azure-AsyncOperation: a status body) or
    `operationstatuses` (Location: 202 until it ends), as the real service answered."""
    path = f"/subscriptions/{subscription}/providers/{PROVIDER}/locations/{location}/{kind}/{op_id}"
    return str(request.url.replace(path=path, query=f"api-version={API_VERSION}"))


def accepted(request: Request, result: Accepted, subscription: str, conf: Settings) -> Response:
    """202 with the operation to poll (Azure-AsyncOperation and Location), which only the caller may read; 200
    when the request finished with no operation; 204 when there was nothing to delete."""
    if result.op_id is None:
        return Response(status_code=200 if result.existed else 204)
    authorization.bind_operation(conf, result.op_id, request.state.principal)
    where = conf.default_location
    return Response(status_code=202, headers={
        "Azure-AsyncOperation": operation_url(request, subscription, result.op_id, where),
        "Location": operation_url(request, subscription, result.op_id, where, "operationstatuses"),
        "Retry-After": RETRY_AFTER_S})


JsonBody = Annotated[Any, Depends(json_body)]
