"""Provider-level routes: operations list, usages, and the results of long-running operations."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from functions.api.common import RETRY_AFTER_S, SUB, operation_url, settings
from shared.domain.keys import PROVIDER
from shared.domain.operations_catalog import operations
from shared.services import removal, usages

router = APIRouter()


@router.get(f"/providers/{PROVIDER}/operations")
def list_operations() -> dict[str, Any]:
    return {"value": operations()}


@router.get(f"{SUB}/providers/{PROVIDER}/locations/{{location}}/usages")
def list_usages(subscriptionId: str, location: str) -> dict[str, Any]:
    return {"value": usages.list_usages(settings(), subscriptionId, location)}


@router.get(f"{SUB}/providers/{PROVIDER}/locations/{{location}}/operationresults/{{operationId}}")
def operation_result(request: Request, subscriptionId: str, location: str, operationId: str) -> dict[str, Any]:
    """The operation's status document (200 while it runs too), as the real service answered its
    Azure-AsyncOperation URL: id, name, status, startTime, endTime, properties.resourceId, error."""
    op = removal.poll(settings(), operationId)
    body: dict[str, Any] = {"id": operation_url(request, subscriptionId, operationId, location).split("?")[0],
                            "name": operationId, "status": op.status, "startTime": op.created_at}
    if op.status != "InProgress":
        body["endTime"] = op.finished_at
    if op.status == "Succeeded" and op.resource_id:
        body["properties"] = {"resourceId": op.resource_id}
    if op.status == "Failed":
        body["error"] = op.error or {"code": "OperationFailed", "message": "The operation failed."}
    return body


@router.get(f"{SUB}/providers/{PROVIDER}/locations/{{location}}/operationstatuses/{{operationId}}")
def operation_status(request: Request, subscriptionId: str, location: str, operationId: str) -> Response:
    """The operation's Location: 202 while in progress; 200 when it succeeded; the recorded ARM error when it failed."""
    op = removal.poll(settings(), operationId)
    if op.status == "InProgress":
        return Response(status_code=202, headers={
            "Location": operation_url(request, subscriptionId, operationId, location, "operationstatuses"),
            "Retry-After": RETRY_AFTER_S})
    if op.status == "Failed":
        error = op.error or {"code": "OperationFailed", "message": "The operation failed."}
        return JSONResponse({"error": error}, status_code=409)
    return Response(status_code=200)
