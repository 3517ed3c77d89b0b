"""Jobs routes: create, delete, get, list by experiment, terminate, listOutputFiles, listRemoteLoginInformation."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from functions.api.common import (
    EXP,
    JOB,
    JsonBody,
    accepted,
    experiment_ref,
    if_match,
    job_ref,
    max_results,
    page,
    resource,
    settings,
    skiptoken,
)
from shared.services import job_outputs, jobs, removal
from shared.services.api_common import utcnow

router = APIRouter()


@router.get(f"{EXP}/jobs")
def list_jobs(request: Request, subscriptionId: str, resourceGroupName: str, workspaceName: str,
              experimentName: str) -> dict[str, Any]:
    ref = experiment_ref(subscriptionId, resourceGroupName, workspaceName, experimentName)
    return page(request, jobs.list_by_experiment(settings(), ref, max_results(request), skiptoken(request)))


@router.put(JOB)
def create_job(request: Request, subscriptionId: str, resourceGroupName: str, workspaceName: str,
               experimentName: str, jobName: str, body: JsonBody) -> JSONResponse:
    ref = job_ref(subscriptionId, resourceGroupName, workspaceName, experimentName, jobName)
    return resource(jobs.create(settings(), ref, body, if_match(request)))


@router.get(JOB)
def get_job(subscriptionId: str, resourceGroupName: str, workspaceName: str, experimentName: str,
            jobName: str) -> JSONResponse:
    return resource(jobs.get(settings(), job_ref(subscriptionId, resourceGroupName, workspaceName, experimentName,
                                                 jobName)))


@router.delete(JOB)
def delete_job(request: Request, subscriptionId: str, resourceGroupName: str, workspaceName: str,
               experimentName: str, jobName: str) -> Response:
    ref = job_ref(subscriptionId, resourceGroupName, workspaceName, experimentName, jobName)
    conf = settings()
    return accepted(request, removal.delete_job(conf, ref, if_match(request)), subscriptionId, conf)


@router.post(f"{JOB}/terminate")
def terminate_job(request: Request, subscriptionId: str, resourceGroupName: str, workspaceName: str,
                  experimentName: str, jobName: str) -> Response:
    ref = job_ref(subscriptionId, resourceGroupName, workspaceName, experimentName, jobName)
    conf = settings()
    return accepted(request, jobs.terminate(conf, ref), subscriptionId, conf)


@router.post(f"{JOB}/listOutputFiles")
@router.get(f"{JOB}/listOutputFiles")  # nextLink pages are fetched with GET
def list_output_files(request: Request, subscriptionId: str, resourceGroupName: str, workspaceName: str,
                      experimentName: str, jobName: str) -> dict[str, Any]:
    ref = job_ref(subscriptionId, resourceGroupName, workspaceName, experimentName, jobName)
    q = request.query_params
    return page(request, job_outputs.list_output_files(
        settings(), ref, q.get("outputdirectoryid"), q.get("directory"), q.get("linkexpiryinminutes"),
        max_results(request), skiptoken(request), utcnow()))


@router.post(f"{JOB}/listRemoteLoginInformation")
def job_remote_login(request: Request, subscriptionId: str, resourceGroupName: str, workspaceName: str,
                     experimentName: str, jobName: str) -> dict[str, Any]:
    ref = job_ref(subscriptionId, resourceGroupName, workspaceName, experimentName, jobName)
    return page(request, jobs.remote_login(settings(), ref))
