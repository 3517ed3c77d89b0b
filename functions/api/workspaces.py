"""Workspaces routes: create, update, delete, get, list by subscription and by resource group."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from functions.api.common import (
    RG,
    SUB,
    WS,
    JsonBody,
    accepted,
    if_match,
    max_results,
    page,
    resource,
    settings,
    skiptoken,
    workspace_ref,
)
from shared.domain import validation
from shared.domain.keys import PROVIDER
from shared.services import removal, workspaces

router = APIRouter()


@router.get(f"{SUB}/providers/{PROVIDER}/workspaces")
def list_workspaces(request: Request, subscriptionId: str) -> dict[str, Any]:
    return page(request, workspaces.list_by_subscription(settings(), subscriptionId, max_results(request),
                                                         skiptoken(request)))


@router.get(f"{RG}/providers/{PROVIDER}/workspaces")
def list_workspaces_by_resource_group(request: Request, subscriptionId: str, resourceGroupName: str) -> dict[str, Any]:
    validation.check_name("resourceGroupName", resourceGroupName)
    return page(request, workspaces.list_by_resource_group(settings(), subscriptionId, resourceGroupName,
                                                           max_results(request), skiptoken(request)))


@router.put(WS)
def create_workspace(request: Request, subscriptionId: str, resourceGroupName: str, workspaceName: str,
                     body: JsonBody) -> JSONResponse:
    ref = workspace_ref(subscriptionId, resourceGroupName, workspaceName)
    return resource(workspaces.create(settings(), ref, body, if_match(request)))


@router.patch(WS)
def update_workspace(request: Request, subscriptionId: str, resourceGroupName: str, workspaceName: str,
                     body: JsonBody) -> JSONResponse:
    ref = workspace_ref(subscriptionId, resourceGroupName, workspaceName)
    return resource(workspaces.update(settings(), ref, body if body is not None else {}, if_match(request)))


@router.get(WS)
def get_workspace(subscriptionId: str, resourceGroupName: str, workspaceName: str) -> JSONResponse:
    return resource(workspaces.get(settings(), workspace_ref(subscriptionId, resourceGroupName, workspaceName)))


@router.delete(WS)
def delete_workspace(request: Request, subscriptionId: str, resourceGroupName: str, workspaceName: str) -> Response:
    ref = workspace_ref(subscriptionId, resourceGroupName, workspaceName)
    conf = settings()
    return accepted(request, removal.delete_workspace(conf, ref, if_match(request)), subscriptionId, conf)
