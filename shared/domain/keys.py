"""Table keys and ARM ids of every resource. Names are case-insensitive in ARM: keys are lowercase.

Key layout (table: PartitionKey / RowKey):
- workspaces:  "{sub}|{rg}"                 / ws
- experiments: "{sub}|{rg}|{ws}"            / exp
- clusters:    "{sub}|{rg}|{ws}"            / cluster
- fileservers: "{sub}|{rg}|{ws}"            / fileserver
- jobs:        "{sub}|{rg}|{ws}|{exp}"      / job
- sched:       cluster key "{sub}|{rg}|{ws}|{cluster}" / "node|{id}", "pend|...", "asg|{job key}"
- heartbeats:  cluster key                  / node id
"""

from __future__ import annotations

from dataclasses import dataclass

SEP = "|"
PROVIDER = "Microsoft.BatchAI"


def _k(*parts: str) -> str:
    return SEP.join(p.lower() for p in parts)


@dataclass(frozen=True)
class WorkspaceRef:
    subscription: str
    resource_group: str
    workspace: str

    @property
    def pk(self) -> str:
        return _k(self.subscription, self.resource_group)

    @property
    def child_pk(self) -> str:
        return _k(self.subscription, self.resource_group, self.workspace)

    @property
    def arm_id(self) -> str:
        return (f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
                f"/providers/{PROVIDER}/workspaces/{self.workspace}")

    def cluster(self, name: str) -> ClusterRef:
        return ClusterRef(self, name)

    def experiment(self, name: str) -> ExperimentRef:
        return ExperimentRef(self, name)


@dataclass(frozen=True)
class ClusterRef:
    workspace: WorkspaceRef
    name: str

    @property
    def key(self) -> str:
        """The cluster key: its scheduling partition in `sched` and `heartbeats`."""
        return _k(self.workspace.subscription, self.workspace.resource_group, self.workspace.workspace,
                  self.name)

    @property
    def arm_id(self) -> str:
        return f"{self.workspace.arm_id}/clusters/{self.name}"

    @classmethod
    def from_key(cls, key: str) -> ClusterRef:
        sub, rg, ws, name = key.split(SEP)
        return cls(WorkspaceRef(sub, rg, ws), name)


@dataclass(frozen=True)
class ExperimentRef:
    workspace: WorkspaceRef
    name: str

    @property
    def job_pk(self) -> str:
        return _k(self.workspace.subscription, self.workspace.resource_group, self.workspace.workspace,
                  self.name)

    @property
    def arm_id(self) -> str:
        return f"{self.workspace.arm_id}/experiments/{self.name}"

    def job(self, name: str) -> JobRef:
        return JobRef(self, name)


@dataclass(frozen=True)
class JobRef:
    experiment: ExperimentRef
    name: str

    @property
    def key(self) -> str:
        """The job key: "{sub}|{rg}|{ws}|{exp}|{job}" (jobs table: PartitionKey + '|' + RowKey)."""
        return f"{self.experiment.job_pk}{SEP}{self.name.lower()}"

    @property
    def arm_id(self) -> str:
        return f"{self.experiment.arm_id}/jobs/{self.name}"

    @classmethod
    def from_key(cls, key: str) -> JobRef:
        sub, rg, ws, exp, name = key.split(SEP)
        return cls(ExperimentRef(WorkspaceRef(sub, rg, ws), exp), name)


@dataclass(frozen=True)
class RunRef:
    """A batch-scoring run: a sub-resource of its workspace (beyond the 2018-05-01 shapes)."""

    workspace: WorkspaceRef
    name: str

    @property
    def arm_id(self) -> str:
        return f"{self.workspace.arm_id}/batchScoringRuns/{self.name}"

    @property
    def index_row(self) -> str:
        return f"{self.workspace.child_pk}{SEP}{self.name.lower()}"

    @classmethod
    def from_index_row(cls, row: str) -> RunRef:
        sub, rg, ws, name = row.split(SEP)
        return cls(WorkspaceRef(sub, rg, ws), name)


def arm_names(arm_id: str) -> dict[str, str]:
    """The names in an ARM id by their lower-case type ("subscriptions", "resourcegroups", "workspaces", ...).
    An ARM id alternates type and name, so it is read by position: a resource named like a type ("jobs")
    is never taken for one."""
    parts = [p for p in arm_id.split("/") if p]
    return {parts[i].lower(): parts[i + 1] for i in range(0, len(parts) - 1, 2)}
