"""Sweep routes (beyond 2018-05-01): create, get, list by experiment, delete, cancel. Same auth, api-version,
paging and ARM errors as the contract's routes; the OpenAPI of the addition is
shared/domain/contract/sweeps.json."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from functions.api.common import (
    EXP,
    JsonBody,
    accepted,
    experiment_ref,
    if_match,
    max_results,
    page,
    resource,
    settings,
    skiptoken,
)
from shared.domain import rbac, validation
from shared.services import sweeps

router = APIRouter(tags=["sweeps"])
SWEEP = EXP + "/sweeps/{sweepName}"


def sweep_ref(subscriptionId: str, resourceGroupName: str, workspaceName: str, experimentName: str,
              sweepName: str) -> sweeps.SweepRef:
    validation.check_name("sweepName", sweepName)
    return sweeps.SweepRef(experiment_ref(subscriptionId, resourceGroupName, workspaceName, experimentName), sweepName)


@router.get(f"{EXP}/sweeps")
def list_sweeps(request: Request, subscriptionId: str, resourceGroupName: str, workspaceName: str,
                experimentName: str) -> dict[str, Any]:
    ref = experiment_ref(subscriptionId, resourceGroupName, workspaceName, experimentName)
    return page(request, sweeps.list_by_experiment(settings(), ref, max_results(request), skiptoken(request)))


@router.put(SWEEP)
def create_sweep(request: Request, subscriptionId: str, resourceGroupName: str, workspaceName: str,
                 experimentName: str, sweepName: str, body: JsonBody) -> JSONResponse:
    ref = sweep_ref(subscriptionId, resourceGroupName, workspaceName, experimentName, sweepName)
    # A sweep creates jobs in its experiment: whoever creates one must be allowed to create them too.
    request.state.access.require(rbac.JOBS_WRITE, ref.experiment.arm_id)
    return resource(sweeps.create(settings(), ref, body, if_match(request)))


@router.get(SWEEP)
def get_sweep(subscriptionId: str, resourceGroupName: str, workspaceName: str, experimentName: str,
              sweepName: str) -> JSONResponse:
    return resource(sweeps.get(settings(), sweep_ref(subscriptionId, resourceGroupName, workspaceName,
                                                     experimentName, sweepName)))


@router.delete(SWEEP)
def delete_sweep(request: Request, subscriptionId: str, resourceGroupName: str, workspaceName: str,
                 experimentName: str, sweepName: str) -> Response:
    ref = sweep_ref(subscriptionId, resourceGroupName, workspaceName, experimentName, sweepName)
    conf = settings()
    return accepted(request, sweeps.delete(conf, ref), subscriptionId, conf)


@router.post(f"{SWEEP}/cancel")
def cancel_sweep(subscriptionId: str, resourceGroupName: str, workspaceName: str, experimentName: str,
                 sweepName: str) -> JSONResponse:
    return resource(sweeps.cancel(settings(), sweep_ref(subscriptionId, resourceGroupName, workspaceName,
                                                        experimentName, sweepName)))
