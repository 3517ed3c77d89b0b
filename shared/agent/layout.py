"""Where things live on a node: the agent's working directory, and the directories of one task.

Node (``--workdir``): ``mounts/`` ($AZ_BATCHAI_MOUNT_ROOT, unless the agent config names another),
``jobs/<assignment id>/`` (``mounts/`` = $AZ_BATCHAI_JOB_MOUNT_ROOT, ``temp/`` = $AZ_BATCHAI_JOB_TEMP,
``wd/`` the task's working directory, ``home/`` its $HOME, ``local/`` node-local stand-ins for paths
outside the mounts, ``execution*.log`` the agent's log of the task, ``sync/`` its blob-mount manifests),
``setup/``, ``sync/`` (blob-mount manifests), ``ledger.json``, ``preempt`` (the simulated eviction
notice).

A job's paths follow Batch AI: output directory ``<pathPrefix>/<segment path>/outputs/<pathSuffix>``
and stdout/stderr in ``<stdOutErrPathPrefix>/<segment path>/stdouterr``, where the segment path is
``{sub}/{rg}/workspaces/{ws}/experiments/{exp}/jobs/{job}/{jobOutputDirectoryPathSegment}`` (or the
segment itself when it is already that full path). A prefix that resolves under a mount root is
used as is (the files land in the mount); any other prefix maps to the task's ``local/`` directory.
None of these paths may climb ('..'): a prefix, suffix or segment that does is refused (InvalidPath).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

from shared.adapters import local_paths
from shared.agent.runtime import TaskStartError
from shared.domain.keys import arm_names
from shared.domain.messages import AssignedTask

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def safe_name(text: str) -> str:
    return _SAFE.sub("_", text)[:120] or "_"


@dataclass(frozen=True)
class NodeLayout:
    workdir: Path
    state_dir: Path
    mounts: Path | None = None  # $AZ_BATCHAI_MOUNT_ROOT when not <workdir>/mounts (a machine's, from its config)

    @property
    def mount_root(self) -> Path:
        return self.mounts or self.workdir / "mounts"

    @property
    def ledger(self) -> Path:
        return self.workdir / "ledger.json"

    @property
    def preempt_file(self) -> Path:
        return self.workdir / "preempt"

    @property
    def sync_dir(self) -> Path:
        return self.workdir / "sync"

    @property
    def setup_dir(self) -> Path:
        return self.workdir / "setup"

    def job_dir(self, assignment_id: str) -> Path:
        return self.workdir / "jobs" / safe_name(assignment_id)


def expand(path: str, roots: dict[str, str]) -> str:
    """$AZ_BATCHAI_MOUNT_ROOT / ${AZ_BATCHAI_JOB_MOUNT_ROOT} (and any name in `roots`) expanded."""
    return Template(path).safe_substitute(roots)


def localize(path: str, roots: list[Path], local_base: Path) -> Path:
    """`path` when it lies under one of `roots`, else the same path under `local_base`."""
    p = Path(os.path.normpath(path))
    for root in roots:
        if p == root or root in p.parents:
            return p
    return local_base / str(p).lstrip("/")


def segment_path(job_arm_id: str, segment: str) -> str:
    """The job's output path segment: Batch AI's full form from a bare jobOutputDirectoryPathSegment."""
    if "/jobs/" in segment:
        return segment.strip("/")
    names = arm_names(job_arm_id)

    def after(name: str) -> str:
        return names.get(name, "_")
    return (f"{after('subscriptions')}/{after('resourcegroups')}/workspaces/{after('workspaces')}"
            f"/experiments/{after('experiments')}/jobs/{after('jobs')}/{segment}").strip("/")


def stream_name(kind: str, task_index: int) -> str:
    """stdout.txt for task 0, stdout-3.txt for task 3 (likewise stderr)."""
    return f"{kind}.txt" if task_index == 0 else f"{kind}-{task_index}.txt"


def execution_log_name(task_index: int) -> str:
    """execution.log for task 0, execution-3.log for task 3: what the node did for the task."""
    return "execution.log" if task_index == 0 else f"execution-{task_index}.log"


def no_climbing(path: str, what: str) -> str:
    if ".." in path.split("/"):
        raise TaskStartError("InvalidPath", f"{what} {path!r} climbs out of its directory ('..')")
    return path


@dataclass
class TaskDirs:
    mount_root: Path
    job_mount_root: Path
    job_temp: Path
    shared_job_temp: Path
    wd: Path
    stdouterr: Path
    job_dir: Path = Path()
    home: Path = Path()
    inputs: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, Path] = field(default_factory=dict)

    def private_dirs(self) -> list[Path]:
        """The task's own directories: only its user may enter them."""
        return [self.wd, self.job_temp, self.home, self.shared_job_temp]

    def all_dirs(self) -> list[Path]:
        return [self.mount_root, self.job_mount_root, *self.private_dirs(), self.stdouterr, *self.outputs.values()]


def task_dirs(layout: NodeLayout, a: AssignedTask) -> TaskDirs:
    job = a.job
    job_dir = layout.job_dir(a.assignment_id)
    mount_root, job_mount_root = layout.mount_root, job_dir / "mounts"
    roots = {"AZ_BATCHAI_MOUNT_ROOT": str(mount_root), "AZ_BATCHAI_JOB_MOUNT_ROOT": str(job_mount_root)}
    local = job_dir / "local"
    segment = segment_path(a.job_arm_id, job.get("jobOutputDirectoryPathSegment") or safe_name(a.assignment_id))

    no_climbing(segment, "jobOutputDirectoryPathSegment")

    def resolve(prefix: str | None, what: str, *rest: str) -> Path:
        for part in rest:
            no_climbing(part, f"the pathSuffix of {what}")
        tail = "/".join([segment, *[r.strip("/") for r in rest if r.strip("/")]])
        if not prefix:
            return local / tail
        return localize(f"{no_climbing(expand(prefix, roots), f'the path prefix of {what}').rstrip('/')}/{tail}",
                        [mount_root, job_mount_root], local)

    dirs = TaskDirs(
        mount_root=mount_root, job_mount_root=job_mount_root, job_temp=job_dir / "temp",
        shared_job_temp=local_paths.shared_job_temp_dir(layout.state_dir, safe_name(a.assignment_id)),
        wd=job_dir / "wd", stdouterr=resolve(job.get("stdOutErrPathPrefix"), "stdouterr", "stdouterr"),
        job_dir=job_dir, home=job_dir / "home")
    for d in job.get("inputDirectories") or []:
        dirs.inputs[d["id"]] = expand(d["path"], roots)
    for d in job.get("outputDirectories") or []:
        dirs.outputs[d["id"]] = resolve(d.get("pathPrefix"), f"output directory {d['id']}", "outputs",
                                        d.get("pathSuffix") or "")
    return dirs
