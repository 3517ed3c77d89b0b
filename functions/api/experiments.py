"""Experiments routes: create, delete, get, list by workspace."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from functions.api.common import (
    EXP,
    WS,
    JsonBody,
    accepted,
    experiment_ref,
    if_match,
    max_results,
    page,
    resource,
    settings,
    skiptoken,
    workspace_ref,
)
from shared.services import experiments, removal

router = APIRouter()


@router.get(f"{WS}/experiments")
def list_experiments(request: Request, subscriptionId: str, resourceGroupName: str,
                     workspaceName: str) -> dict[str, Any]:
    ws = workspace_ref(subscriptionId, resourceGroupName, workspaceName)
    return page(request, experiments.list_by_workspace(settings(), ws, max_results(request), skiptoken(request)))


@router.put(EXP)
def create_experiment(request: Request, subscriptionId: str, resourceGroupName: str, workspaceName: str,
                      experimentName: str, body: JsonBody) -> JSONResponse:
    ref = experiment_ref(subscriptionId, resourceGroupName, workspaceName, experimentName)
    return resource(experiments.create(settings(), ref, body, if_match(request)))


@router.get(EXP)
def get_experiment(subscriptionId: str, resourceGroupName: str, workspaceName: str,
                   experimentName: str) -> JSONResponse:
    ref = experiment_ref(subscriptionId, resourceGroupName, workspaceName, experimentName)
    return resource(experiments.get(settings(), ref))


@router.delete(EXP)
def delete_experiment(request: Request, subscriptionId: str, resourceGroupName: str, workspaceName: str,
                      experimentName: str) -> Response:
    ref = experiment_ref(subscriptionId, resourceGroupName, workspaceName, experimentName)
    conf = settings()
    return accepted(request, removal.delete_experiment(conf, ref, if_match(request)), subscriptionId, conf)
