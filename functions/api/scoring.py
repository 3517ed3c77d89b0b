"""Routes added beyond 2018-05-01: batch-scoring runs (get, list by workspace) and the queue
submissions that were refused (list by resource group). Read-only; same auth, api-version, paging
and ARM errors as the contract's routes. Response models document them in the OpenAPI schema."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from functions.api.common import RG, WS, max_results, page, resource, settings, skiptoken, workspace_ref
from shared.domain import validation
from shared.domain.keys import PROVIDER
from shared.services import scoring, submissions

router = APIRouter(tags=["batchScoringRuns"])


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Counts(_Open):
    total: int
    succeeded: int
    failed: int


class ItemCounts(Counts):
    pending: int


class JobCounts(Counts):
    running: int = Field(description="Scoring jobs created and not yet settled.")
    retries: int = Field(description="Extra attempts made for chunks with failed items.")


class Progress(_Open):
    items: ItemCounts
    jobs: JobCounts


class RunError(_Open):
    code: str
    message: str


class RunProperties(_Open):
    state: str = Field(description="preparing | scoring | finalizing | succeeded | failed")
    stateTransitionTime: str
    stateReason: str | None = Field(None, description="Why the run is in its state (failure reasons included).")
    creationTime: str
    endTime: str | None = None
    manifest: dict[str, str] = Field(description="The manifest blob (container, blob, etag) that started the run.")
    progress: Progress
    errors: list[RunError] = Field(default_factory=list)
    summary: dict[str, str] | None = Field(None, description="The summary blob: per-item status and outputs.")
    finalJob: dict[str, Any] | None = None


class BatchScoringRun(_Open):
    id: str
    name: str
    type: str = f"{PROVIDER}/batchScoringRuns"
    properties: RunProperties


class BatchScoringRunList(BaseModel):
    value: list[BatchScoringRun]
    nextLink: str | None = None


class RejectedSubmission(_Open):
    id: str
    name: str
    type: str = f"{PROVIDER}/rejectedSubmissions"
    properties: dict[str, Any] = Field(description="code, message, target, messageId, insertionTime, "
                                                   "dequeueCount, workspace, experiment, jobName, correlationId, "
                                                   "replyTo, bodyLength, body (the message as received, without "
                                                   "its token, secret values, keys, passwords or mount commands).")


class RejectedSubmissionList(BaseModel):
    value: list[RejectedSubmission]
    nextLink: str | None = None


@router.get(f"{WS}/batchScoringRuns", response_model=BatchScoringRunList,
            description="The workspace's batch-scoring runs (started by manifests uploaded to batchai-triggers).")
def list_runs(request: Request, subscriptionId: str, resourceGroupName: str, workspaceName: str) -> dict[str, Any]:
    ws = workspace_ref(subscriptionId, resourceGroupName, workspaceName)
    return page(request, scoring.list_by_workspace(settings(), ws, max_results(request), skiptoken(request)))


@router.get(f"{WS}/batchScoringRuns/{{runName}}", response_model=BatchScoringRun,
            description="One batch-scoring run: state, progress, errors and its summary blob.")
def get_run(subscriptionId: str, resourceGroupName: str, workspaceName: str, runName: str) -> JSONResponse:
    validation.check_name("runName", runName)
    ws = workspace_ref(subscriptionId, resourceGroupName, workspaceName)
    return resource(scoring.get(settings(), scoring.RunRef(ws, runName)))


@router.get(f"{RG}/providers/{PROVIDER}/rejectedSubmissions", response_model=RejectedSubmissionList,
            description="Job submissions from the job-submissions queue that were refused, with the reason.")
def list_rejected(request: Request, subscriptionId: str, resourceGroupName: str) -> dict[str, Any]:
    validation.check_name("resourceGroupName", resourceGroupName)
    return page(request, submissions.list_rejected(settings(), subscriptionId, resourceGroupName,
                                                   max_results(request), skiptoken(request)))
