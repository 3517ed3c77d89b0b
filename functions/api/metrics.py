"""The job metrics route, an addition beyond 2018-05-01 under the job resource:
`GET .../experiments/{experimentName}/jobs/{jobName}/metrics[?name=NAME]`. Same auth (the job's read
action), api-version and ARM errors as the contract's routes; 2018-05-01 clients never call it. The
response model documents it in the OpenAPI schema."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from functions.api.common import JOB, job_ref, settings
from shared.services import metrics

router = APIRouter(tags=["jobMetrics"])


class MetricPoint(BaseModel):
    step: int = Field(description="The step the value was logged at (0, 1, ... per name when none was given).")
    value: float


class MetricSeries(BaseModel):
    name: str = Field(description="The metric's name, as `batchai_metrics.log(name, value, step)` gave it.")
    source: str = Field(description="The task's stdout file the values were read from (stdout.txt: task 0; "
                                    "stdout-<i>.txt: task i).")
    points: list[MetricPoint] = Field(description="The values, by step.")


class MetricList(BaseModel):
    value: list[MetricSeries]


@router.get(f"{JOB}/metrics", response_model=MetricList, summary="List a job's metrics",
            description="The metrics the job's tasks logged (Python: `batchai_metrics.log(name, value, step=None)`; "
                        "any language: the stdout line `##batchai[metric name=N value=V step=S]`), one series per "
                        "name and task, read from the tasks' stdout while the job runs and after it ends. At most "
                        f"{metrics.MAX_POINTS_PER_FILE} values per task are kept.")
def list_metrics(subscriptionId: str, resourceGroupName: str, workspaceName: str, experimentName: str,
                 jobName: str, name: str | None = Query(None, description="Only this metric's series.")
                 ) -> dict[str, Any]:
    ref = job_ref(subscriptionId, resourceGroupName, workspaceName, experimentName, jobName)
    return {"value": [s.render() for s in metrics.job_metrics(settings(), ref, name)]}
