"""Running one assignment (one task of a job) on this node, from its directories to ``task-exited``.

Key Vault references read (the job's and its cluster's, see `environment.resolve_secrets`) ->
mounts (the cluster's, then the job's, before anything is created under their roots: a task's
stdout/stderr or output directory may lie on a job volume), directories and environment ->
``task-started`` -> job preparation (if any) -> the toolkit's command (or serve the gang until
stopped) -> upload outputs and blob-mount changes -> undo the job's mounts -> ``task-exited`` with
the exit code, the error and the stop reason. Each assignment runs on its own thread, so that the
agent keeps reading stop messages while it runs. Every process the task starts on this node shares
its mounts.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.agent.blobsync import BlobMount, upload_tree
from shared.agent.environment import SecretReader, resolve_secrets, task_env
from shared.agent.layout import NodeLayout, TaskDirs, stream_name, task_dirs
from shared.agent.mounts import MountedVolumes
from shared.agent.node_storage import NodeStorage, OutputBlobs
from shared.agent.process_runtime import ProcessRuntime
from shared.agent.retry import GaveUp
from shared.agent.runtime import TaskLaunch, TaskRuntime, TaskStartError
from shared.agent.streaming import LogStreamer
from shared.agent.supervise import StopRequest, Supervisor, TaskControl, wall_clock_limit_s
from shared.agent.transport import AgentChannel
from shared.decisions.toolkits import PlanError, TaskPlan, gang_port, plan_task
from shared.domain.messages import AssignedTask

log = logging.getLogger(__name__)


def runtime_for(job: dict[str, Any], read_secret: SecretReader | None = None) -> TaskRuntime:
    """Host processes, or the container runtime when the job asks for a container (never the host then)."""
    if not job.get("containerSettings"):
        return ProcessRuntime()
    try:
        from shared.agent import containers
    except ImportError as error:  # e.g. the `docker` package is not installed on this node
        raise TaskStartError("ContainerRuntimeUnavailable",
                             f"the job asks for a container but this node has no container runtime: {error}") from error
    # An unreachable engine fails the task at start, never runs it on the host.
    return containers.DockerRuntime(read_secret=read_secret)


def _binds(dirs: TaskDirs) -> list[str]:
    """Directories a container needs at the same paths: the task's, and where the mounts' links point."""
    paths = {str(p) for p in dirs.all_dirs()}
    for root in (dirs.mount_root, dirs.job_mount_root):
        for current, subdirs, _ in os.walk(root):
            for name in subdirs:
                link = Path(current) / name
                if link.is_symlink():
                    paths.add(os.path.realpath(link))
    return sorted(paths)


@dataclass
class NodeContext:
    """What every task on this node shares."""
    storage: NodeStorage
    layout: NodeLayout
    channel: AgentChannel
    gpus: int
    base_env: dict[str, str]
    mount_cluster: Callable[[dict[str, Any]], list[BlobMount]]
    # (job mountVolumes, job mount root, the assignment's directory) -> the mounted volumes
    mount_job: Callable[[dict[str, Any] | None, Path, Path], MountedVolumes]
    give_up: threading.Event
    read_secret: SecretReader | None = None  # Key Vault, with the node's identity (None: it has none)


@dataclass
class Outcome:
    exit_code: int | None = None
    error: dict[str, str] | None = None
    stop_reason: str | None = None


class TaskRunner:
    def __init__(self, node: NodeContext, assignment: AssignedTask, on_done: Callable[[str], None]) -> None:
        self.node = node
        self.a = assignment
        self.on_done = on_done
        self.control = TaskControl()
        self.thread = threading.Thread(target=self._main, name=f"task-{assignment.assignment_id}", daemon=True)

    @property
    def assignment_id(self) -> str:
        return self.a.assignment_id

    def start(self) -> TaskRunner:
        self.thread.start()
        return self

    def stop(self, reason: str, grace_s: float) -> None:
        self.control.request(StopRequest(reason, grace_s))

    def _event(self, kind: str, **fields: Any) -> None:
        self.node.channel.send(kind, assignment_id=self.a.assignment_id, job_key=self.a.job_key,
                               task_index=self.a.task_index, **fields)

    def _main(self) -> None:
        try:
            try:
                outcome = self._run()
            except GaveUp:
                raise
            except Exception as error:  # unforeseen (e.g. storage refused an upload): the task is still reported
                log.exception("task %s failed in the agent", self.a.assignment_id)
                outcome = Outcome(error={"code": "NodeAgentError", "message": f"{type(error).__name__}: {error}"})
            self._event("task-exited", exit_code=outcome.exit_code, error=outcome.error,
                        stop_reason=outcome.stop_reason)
            log.info("task %s exited: code %s, stop %s, error %s", self.a.assignment_id, outcome.exit_code,
                     outcome.stop_reason, (outcome.error or {}).get("code"))
        except GaveUp:
            log.error("task %s: the agent exits before the task could be reported", self.a.assignment_id)
            return
        self.on_done(self.a.assignment_id)

    def _run(self) -> Outcome:
        a, node = self.a, self.node
        outcome = Outcome()
        dirs: TaskDirs | None = None
        mounts: list[BlobMount] = []
        job_volumes = MountedVolumes()
        blobs = node.storage.outputs(a.output_container, a.assignment_id)
        try:
            a = self.a = dataclasses.replace(a, job=resolve_secrets(a.job, node.read_secret),
                                             cluster=resolve_secrets(a.cluster, node.read_secret))
            try:
                plan = plan_task(a.job, a.task_index, a.nodes, port=gang_port(a.assignment_id))
            except PlanError as error:
                raise TaskStartError(error.code, error.message) from error
            except (NotImplementedError, ValueError, KeyError) as error:
                raise TaskStartError("ToolkitNotSupported", str(error)) from error
            dirs = task_dirs(node.layout, a)
            mounts = node.mount_cluster(a.cluster)
            job_volumes = node.mount_job(a.job.get("mountVolumes"), dirs.job_mount_root,
                                         node.layout.job_dir(a.assignment_id))
            mounts += job_volumes.blob_mounts
            try:
                dirs.create()
            except OSError as error:
                raise TaskStartError("TaskPreparationFailed",
                                     f"cannot create the job's directories: {error}") from error
            env = task_env(node.base_env, dirs, a, node.gpus, plan.env)
            runtime = runtime_for(a.job, node.read_secret)
            if self.control.stop is not None:  # stopped before it started
                outcome.stop_reason = self.control.stop.reason
                return outcome
            self._event("task-started")
            limit_s = wall_clock_limit_s(a.job)
            supervisor = Supervisor(self.control, time.monotonic() + limit_s, limit_s)
            self._execute(runtime, plan, dirs, env, blobs, supervisor, outcome)
        except TaskStartError as error:
            outcome.error = {"code": error.code, "message": error.message}
        finally:
            try:
                self._upload(dirs, mounts, blobs, outcome)
            finally:
                job_volumes.release()
        return outcome

    def _launch(self, command: str, dirs: TaskDirs, env: dict[str, str], stdout: Path, stderr: Path,
                name: str) -> TaskLaunch:
        return TaskLaunch(command=command, env=env, cwd=str(dirs.wd), stdout_path=str(stdout),
                          stderr_path=str(stderr), container=self.a.job.get("containerSettings"),
                          binds=_binds(dirs), host_network=True, gpus=self.node.gpus, name=name,
                          labels={"batchai.assignment": self.a.assignment_id,
                                  "batchai.node": self.node.channel.node_id})

    def _execute(self, runtime: TaskRuntime, plan: TaskPlan, dirs: TaskDirs, env: dict[str, str],
                 blobs: OutputBlobs, supervisor: Supervisor, outcome: Outcome) -> None:
        a = self.a
        prefix = a.output_prefix.rstrip("/")
        prep = (a.job.get("jobPreparation") or {}).get("commandLine")
        if prep:
            suffix = "" if a.task_index == 0 else f"-{a.task_index}"
            files = {k: dirs.stdouterr / f"{k}-job_prep{suffix}.txt" for k in ("stdout", "stderr")}
            code, stop = self._run_streamed(runtime, supervisor, blobs, self._launch(
                prep, dirs, env, files["stdout"], files["stderr"], f"{a.job_key}-{a.task_index}-prep"),
                [(files[k], f"{prefix}/stdouterr/{files[k].name}") for k in files])
            if stop is not None:
                outcome.exit_code, outcome.stop_reason, outcome.error = code, stop.reason, stop.error
                return
            if code != 0:
                outcome.exit_code = code
                outcome.error = {"code": "JobPreparationFailed",
                                 "message": f"job preparation exited with code {code}: {tail_text(files['stderr'])}"}
                return
        if plan.command is None:
            stop = supervisor.serve()
            outcome.exit_code, outcome.stop_reason = 0, stop.reason
            return
        files = {k: dirs.stdouterr / stream_name(k, a.task_index) for k in ("stdout", "stderr")}
        per_process = [dirs.stdouterr / name for p in plan.processes for name in p.output_files()]
        code, stop = self._run_streamed(runtime, supervisor, blobs, self._launch(
            plan.command, dirs, env, files["stdout"], files["stderr"], f"{a.job_key}-{a.task_index}"),
            [(path, f"{prefix}/stdouterr/{path.name}") for path in (*files.values(), *per_process)])
        outcome.exit_code = code
        if stop is not None:
            outcome.stop_reason, outcome.error = stop.reason, stop.error

    def _run_streamed(self, runtime: TaskRuntime, supervisor: Supervisor, blobs: OutputBlobs, launch: TaskLaunch,
                      streams: list[tuple[Path, str]]) -> tuple[int | None, StopRequest | None]:
        for path, _ in streams:
            path.touch()
        streamer = LogStreamer(blobs, streams, give_up=self.node.give_up).start()
        try:
            running = runtime.start(launch)
            return supervisor.run(running)
        finally:
            streamer.close()

    def _upload(self, dirs: TaskDirs | None, mounts: list[BlobMount], blobs: OutputBlobs, outcome: Outcome) -> None:
        """Outputs and blob-mount changes go up whatever happened; a failure here is the task's error."""
        try:
            for output_id, path in (dirs.outputs.items() if dirs else []):
                upload_tree(blobs, path, f"{self.a.output_prefix.rstrip('/')}/outputs/{output_id}",
                            self.node.give_up)
            for mount in mounts:
                mount.upload_changes()
        except GaveUp:
            raise
        except Exception as error:
            if outcome.error is None:
                outcome.error = {"code": "OutputUploadFailed", "message": f"{type(error).__name__}: {error}"}


def tail_text(path: Path, limit: int = 2000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - limit))
            return f.read().decode(errors="replace").strip()
    except OSError:
        return ""
