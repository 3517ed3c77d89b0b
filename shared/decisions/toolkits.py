"""What each task of a job runs: the toolkit settings of a job turned into a command and env.

Pure: the job's properties, the task index and the gang's addresses in; a `TaskPlan` out.
Every toolkit of the 2018-05-01 contract is decided here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.domain.messages import NodeAddress


@dataclass
class TaskPlan:
    command: str | None  # a bash command line; None: this node only serves the gang until told to stop
    env: dict[str, str] = field(default_factory=dict)
    required: bool = True  # the job succeeds only when every required task exits 0


def plan_task(job: dict[str, Any], task_index: int, nodes: list[NodeAddress]) -> TaskPlan:
    custom = job.get("customToolkitSettings")
    if custom is not None:
        if task_index != 0:
            return TaskPlan(command=None, required=False)
        return TaskPlan(command=custom.get("commandLine") or "")
    raise NotImplementedError(f"toolkit of job not supported yet: {sorted(k for k in job if k.endswith('Settings'))}")
