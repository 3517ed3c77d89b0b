"""Getting one task ready to run on its node, each step written to its execution log: Key Vault
references read, the toolkit's plan, mounts (the cluster's, then the job's, before anything is made
under their roots), the job's user, the network rules, the task's directories, its environment and
its view of the node. `PreparedTask.release` undoes what was taken, last first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.agent.environment import SecretReader, resolve_secrets, task_env
from shared.agent.execution_log import ExecutionLog, secret_values
from shared.agent.firewall import FirewallError
from shared.agent.isolation import JobIsolation
from shared.agent.job_accounts import JobAccounts
from shared.agent.job_dirs import PreparedDirs, lock_away, prepare
from shared.agent.job_users import Claim, JobUser
from shared.agent.layout import NodeLayout, TaskDirs, task_dirs
from shared.agent.mounts import MountedVolumes
from shared.agent.runtime import RunAs, TaskStartError
from shared.agent.sandbox import view_for
from shared.decisions.toolkits import PlanError, TaskPlan, gang_port, plan_task
from shared.domain.messages import AssignedTask

#: (mountVolumes, mount root, the assignment's directory) -> the mounted volumes
MountJob = Callable[[dict[str, Any] | None, Path, Path], MountedVolumes]


@dataclass
class PreparedTask:
    task: AssignedTask
    plan: TaskPlan | None = None
    dirs: TaskDirs | None = None
    volumes: list[MountedVolumes] = field(default_factory=list)
    claim: Claim | None = None
    held: PreparedDirs | None = None
    env: dict[str, str] = field(default_factory=dict)
    run_as: RunAs | None = None
    accounts: JobAccounts | None = None  # where the job user's account was made (removed with it)

    @property
    def user(self) -> JobUser | None:
        return self.claim.user if self.claim is not None else None

    def sources(self) -> list[Path]:
        return [source for volumes in self.volumes for source in volumes.sources]

    def binds(self) -> list[str]:
        """What a container gets bound: the task's own directories, the mount roots, and the directories
        the agent's mounts reach; never a path a job could have pointed elsewhere."""
        assert self.dirs is not None and self.held is not None
        d = self.dirs
        paths = [d.mount_root, d.job_mount_root, *d.private_dirs(), *(h.path for h in self.held.held()),
                 *self.sources()]
        return sorted({str(p) for p in paths})

    def release(self, log: ExecutionLog) -> None:
        """Let go of the job's user (its leftovers end), undo the mounts."""
        try:
            if self.claim is not None:
                ended = self.claim.release()
                if ended:
                    log.write(f"job user: {ended} process(es) the job left running were ended")
                if ended is not None and self.accounts is not None:
                    self.accounts.remove(self.claim.user.name)
        finally:
            try:
                for volumes in reversed(self.volumes):
                    volumes.release()
                if any(v.sources or v.blob_mounts for v in self.volumes):
                    log.write("mounts undone")
            finally:
                self.volumes = []

    def close(self) -> None:
        """Close the task's directories; the assignment's becomes root's alone."""
        if self.held is not None:
            self.held.close()
        if self.dirs is not None and self.claim is not None:
            lock_away(self.dirs.job_dir)


def _mounted(log: ExecutionLog, level: str, volumes: MountedVolumes) -> MountedVolumes:
    for line in volumes.log:
        log.write(f"{level} volume: {line}")
    return volumes


def prepare_task(a: AssignedTask, layout: NodeLayout, prepared: PreparedTask, log: ExecutionLog,
                 read_secret: SecretReader | None, mount_cluster: Callable[[dict[str, Any]], MountedVolumes],
                 mount_job: MountJob, isolation: JobIsolation, base_env: dict[str, str], gpus: int) -> None:
    """Fill `prepared` step by step (what was taken is released by the caller even when a step fails).
    Raises TaskStartError."""
    a = prepared.task = dataclasses.replace(a, job=resolve_secrets(a.job, read_secret),
                                            cluster=resolve_secrets(a.cluster, read_secret))
    log.secrets = secret_values(a.job, a.cluster)
    try:
        plan = prepared.plan = plan_task(a.job, a.task_index, a.nodes, port=gang_port(a.assignment_id))
    except PlanError as error:
        raise TaskStartError(error.code, error.message) from error
    except (NotImplementedError, ValueError, KeyError) as error:
        raise TaskStartError("ToolkitNotSupported", str(error)) from error
    log.write(f"plan: {len(plan.processes)} process(es) on this node" if plan.command is not None
              else "plan: nothing to run on this node (it serves the gang until stopped)")
    dirs = prepared.dirs = task_dirs(layout, a)
    prepared.volumes.append(_mounted(log, "cluster", mount_cluster(a.cluster)))
    job_dir = layout.job_dir(a.assignment_id)
    prepared.volumes.append(_mounted(log, "job", mount_job(a.job.get("mountVolumes"), dirs.job_mount_root, job_dir)))
    prepared.claim = isolation.claim(a.assignment_id)
    user = prepared.user
    log.write(f"job user: uid {user.uid}, gid {user.gid}" if user is not None
              else "job user: the agent's own (the agent is not root and cannot switch users)")
    try:
        closed = isolation.network()
    except FirewallError as error:
        raise TaskStartError("NetworkIsolationFailed", f"the job's network rules cannot be installed: {error}") \
            from error
    log.write("network: no rules on this node (a process node: the host's network is not the agent's)"
              if closed is None else
              "network: the job's traffic to " + ", ".join(f"{d.address}:{d.port or '*'}" for d in closed)
              + " is rejected")
    held = prepared.held = prepare(dirs, user, prepared.sources())
    log.write(f"directories: working {dirs.wd}, temp {dirs.job_temp}, stdout/stderr {held.stdouterr.path}"
              + "".join(f", output {k} {v.path}" for k, v in held.outputs.items()))
    env = prepared.env = task_env(base_env, dirs, a, gpus, plan.env, user.name if user else None)
    if user is not None and isolation.accounts is not None:
        prepared.accounts = isolation.accounts
        try:
            rsh = isolation.accounts.create(user.name, user.uid, user.gid, dirs.home, a.assignment_id)
        except OSError as error:
            raise TaskStartError("TaskPreparationFailed", f"cannot make the job's account: {error}") from error
        if rsh is not None:
            env["OMPI_MCA_plm_rsh_agent"] = str(rsh)
        log.write(f"job account {user.name}" + (" (ssh to the gang's nodes)" if rsh is not None else ""))
    names = sorted({v["name"] for v in a.job.get("environmentVariables") or []})
    log.write(f"environment: {len(env)} variables, of the job: {', '.join(names) or 'none'}; "
              f"secrets: {len(a.job.get('secrets') or [])}")
    log.write("\n".join(f"  {k}={v}" for k, v in sorted(env.items())
                        if k.startswith("AZ_BATCHAI_") or k == "TF_CONFIG"))
    if user is not None:
        reach = [*dirs.private_dirs(), dirs.mount_root, dirs.job_mount_root, *(h.path for h in held.held()),
                 *prepared.sources(), *isolation.reachable]
        prepared.run_as = RunAs(user.uid, user.gid, view_for(reach, user.uid, user.gid, isolation.hidden))
        if prepared.run_as.view:
            log.write("view: of these directories the job sees only " + "; ".join(
                f"{d}: {', '.join(e)}" for d, e in prepared.run_as.view))
