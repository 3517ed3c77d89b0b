"""Running one assignment (one task of a job) on this node, from its directories to ``task-exited``.

Preparation (`shared.agent.task_prepare`: Key Vault references, plan, mounts, the job's user and
network rules, directories, environment) -> ``task-started`` -> job preparation (if any) -> the
toolkit's command (or serve the gang until stopped) -> upload outputs and blob-mount changes -> let
go of the job's user, undo the job's mounts -> ``task-exited`` with the exit code, the error and the
stop reason. Every step goes to the task's execution log (`shared.agent.execution_log`), streamed
beside its stdout. The job's processes run as the job's own user (`RunAs`), in a container or on the
node; the agent reaches their files only through the directories it holds (`shared.agent.confine`).
Each assignment runs on its own thread, so that the agent keeps reading stop messages while it runs.
Every process the task starts on this node shares its mounts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared import telemetry
from shared.agent.blobsync import upload_tree
from shared.agent.confine import open_file
from shared.agent.counters import PerformanceCounters
from shared.agent.environment import SecretReader
from shared.agent.execution_log import ExecutionLog
from shared.agent.isolation import JobIsolation, process_node
from shared.agent.layout import NodeLayout, execution_log_name, stream_name
from shared.agent.mounts import MountedVolumes
from shared.agent.node_storage import NodeStorage, OutputBlobs
from shared.agent.process_runtime import ProcessRuntime
from shared.agent.retry import GaveUp
from shared.agent.runtime import TaskLaunch, TaskRuntime, TaskStartError
from shared.agent.start_report import StartReport
from shared.agent.streaming import LogStreamer
from shared.agent.supervise import StopRequest, Supervisor, TaskControl, wall_clock_limit_s
from shared.agent.task_prepare import MountJob, PreparedTask, prepare_task
from shared.agent.transport import AgentChannel, utc_now
from shared.domain.messages import AssignedTask, NodeEvent

logger = logging.getLogger(__name__)


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


@dataclass
class NodeContext:
    """What every task on this node shares."""
    storage: NodeStorage
    layout: NodeLayout
    channel: AgentChannel
    gpus: int
    base_env: dict[str, str]
    mount_cluster: Callable[[dict[str, Any]], MountedVolumes]
    mount_job: MountJob
    give_up: threading.Event
    read_secret: SecretReader | None = None  # Key Vault, with the node's identity (None: it has none)
    isolation: JobIsolation = field(default_factory=process_node)
    counters: PerformanceCounters | None = None  # the cluster's performanceCountersSettings, when it has them


@dataclass
class Outcome:
    exit_code: int | None = None
    error: dict[str, str] | None = None
    stop_reason: str | None = None


class TaskRunner:
    def __init__(self, node: NodeContext, assignment: AssignedTask, on_done: Callable[[str], None],
                 traceparent: str = "") -> None:
        self.node = node
        self.a = assignment
        self.on_done = on_done
        self.traceparent = traceparent  # the assignment's span: the task's spans continue it
        self.control = TaskControl()
        self.thread = threading.Thread(target=self._main, name=f"task-{assignment.assignment_id}", daemon=True)
        self.prepared: PreparedTask | None = None  # once the task is prepared: its environment (node exec)
        self.report: str | None = None  # the task-exited event as sent (the ledger keeps it)
        self.start_report = StartReport(self._send_started)
        self._start_trace: str | None = None  # the trace at the task's start, for its deferred task-started

    @property
    def assignment_id(self) -> str:
        return self.a.assignment_id

    def start(self) -> TaskRunner:
        self.thread.start()
        return self

    def stop(self, reason: str, grace_s: float) -> None:
        self.control.request(StopRequest(reason, grace_s))

    def _event(self, kind: str, at: str | None = None, trace: str | None = None, **fields: Any) -> NodeEvent:
        return self.node.channel.send(kind, at=at, assignment_id=self.a.assignment_id, job_key=self.a.job_key,
                                      task_index=self.a.task_index,
                                      traceparent=trace or telemetry.traceparent() or None, **fields)

    def _send_started(self, at: str) -> None:
        self._event("task-started", at=at, trace=self._start_trace)

    def _main(self) -> None:
        with telemetry.span("task", parent=self.traceparent, **{
                "batchai.job": self.a.job_key, "batchai.assignment": self.a.assignment_id,
                "batchai.task_index": self.a.task_index, "batchai.node": self.node.channel.node_id}):
            self._traced_main()

    def _traced_main(self) -> None:
        try:
            try:
                outcome = self._run()
            except GaveUp:
                raise
            except Exception as error:  # unforeseen (e.g. storage refused an upload): the task is still reported
                logger.exception("task %s failed in the agent", self.a.assignment_id)
                outcome = Outcome(error={"code": "NodeAgentError", "message": f"{type(error).__name__}: {error}"})
            with telemetry.span("task exit", **{"batchai.exit_code": outcome.exit_code,
                                                "batchai.stop_reason": outcome.stop_reason,
                                                "batchai.error": (outcome.error or {}).get("code")}):
                self.report = self._event("task-exited", exit_code=outcome.exit_code, error=outcome.error,
                                          stop_reason=outcome.stop_reason,
                                          started_at=self.start_report.close()).to_json()
            logger.info("task %s exited: code %s, stop %s, error %s", self.a.assignment_id, outcome.exit_code,
                     outcome.stop_reason, (outcome.error or {}).get("code"))
        except GaveUp:
            logger.error("task %s: the agent exits before the task could be reported", self.a.assignment_id)
            return
        self.on_done(self.a.assignment_id)

    def _run(self) -> Outcome:
        a, node = self.a, self.node
        outcome = Outcome()
        blobs = node.storage.outputs(a.output_container, a.assignment_id)
        job_dir = node.layout.job_dir(a.assignment_id)
        name = execution_log_name(a.task_index)
        log = ExecutionLog(job_dir / name)
        streamer = LogStreamer(blobs, [(log.path, f"{a.output_prefix.rstrip('/')}/stdouterr/{name}")],
                               give_up=node.give_up).start()
        prepared = PreparedTask(a)
        try:
            log.write(f"task {a.task_index} of job {a.job_arm_id} (assignment {a.assignment_id}, attempt "
                      f"{a.attempt}) on node {node.channel.node_id}")
            try:
                self._prepare_and_run(prepared, blobs, log, outcome)
            finally:
                try:
                    self._upload(prepared, blobs, outcome, log)
                finally:
                    prepared.release(log)
            _end(log, outcome)
            self._keep_log(prepared, log)
        finally:
            prepared.close()
            log.close()
            _close(streamer, outcome)
        return outcome

    def _prepare_and_run(self, prepared: PreparedTask, blobs: OutputBlobs, log: ExecutionLog,
                         outcome: Outcome) -> None:
        node = self.node
        try:
            prepare_task(self.a, node.layout, prepared, log, node.read_secret, node.mount_cluster, node.mount_job,
                         node.isolation, node.base_env, node.gpus)
            self.a = prepared.task
            self.prepared = prepared
            runtime = runtime_for(self.a.job, node.read_secret)
            if self.control.stop is not None:  # stopped before it started
                outcome.stop_reason = self.control.stop.reason
                log.write(f"stopped before it started ({outcome.stop_reason})")
                return
            self._start_trace = telemetry.traceparent() or None
            self.start_report.started(utc_now())
            limit_s = wall_clock_limit_s(self.a.job)
            supervisor = Supervisor(self.control, time.monotonic() + limit_s, limit_s)
            self._execute(runtime, prepared, blobs, supervisor, outcome, log)
        except TaskStartError as error:
            outcome.error = {"code": error.code, "message": error.message}

    def exec_launch(self, command: str, stdout: Path, stderr: Path) -> TaskLaunch | None:
        """A launch of `command` in this task's environment (its user, directory, variables and container
        settings), or None before the task is prepared or after it ended."""
        prepared = self.prepared
        if prepared is None or prepared.dirs is None or not self.thread.is_alive():
            return None
        return self._launch(command, prepared, stdout, stderr, f"{self.a.job_key}-{self.a.task_index}")

    def _launch(self, command: str, prepared: PreparedTask, stdout: Path, stderr: Path, name: str) -> TaskLaunch:
        assert prepared.dirs is not None
        return TaskLaunch(command=command, env=prepared.env, cwd=str(prepared.dirs.wd), stdout_path=str(stdout),
                          stderr_path=str(stderr), container=self.a.job.get("containerSettings"),
                          binds=prepared.binds(), host_network=True, name=name,
                          gpus=self.node.gpus if self.a.gpus is None else len(self.a.gpus), gpu_ids=self.a.gpus,
                          labels={"batchai.assignment": self.a.assignment_id,
                                  "batchai.node": self.node.channel.node_id},
                          run_as=prepared.run_as, home=str(prepared.dirs.home))

    def _execute(self, runtime: TaskRuntime, prepared: PreparedTask, blobs: OutputBlobs, supervisor: Supervisor,
                 outcome: Outcome, log: ExecutionLog) -> None:
        a, plan, held = self.a, prepared.plan, prepared.held
        assert plan is not None and held is not None
        prefix = a.output_prefix.rstrip("/")
        image = ((a.job.get("containerSettings") or {}).get("imageSourceRegistry") or {}).get("image")
        if image:
            log.write(f"container image {image}")
        prep = (a.job.get("jobPreparation") or {}).get("commandLine")
        if prep:
            suffix = "" if a.task_index == 0 else f"-{a.task_index}"
            files = {k: held.file(f"{k}-job_prep{suffix}.txt") for k in ("stdout", "stderr")}
            code, stop = self._run_streamed(runtime, supervisor, blobs, self._launch(
                prep, prepared, files["stdout"], files["stderr"], f"{a.job_key}-{a.task_index}-prep"),
                [(files[k], f"{prefix}/stdouterr/{files[k].name}") for k in files], log, "job preparation")
            if stop is not None:
                outcome.exit_code, outcome.stop_reason, outcome.error = code, stop.reason, stop.error
                return
            if code != 0:
                outcome.exit_code = code
                outcome.error = {"code": "JobPreparationFailed",
                                 "message": f"job preparation exited with code {code}: {tail_text(files['stderr'])}"}
                return
        if plan.command is None:
            log.write("serving the gang until stopped")
            stop = supervisor.serve()
            outcome.exit_code, outcome.stop_reason = 0, stop.reason
            return
        files = {k: held.file(stream_name(k, a.task_index)) for k in ("stdout", "stderr")}
        per_process = [held.file(name) for p in plan.processes for name in p.output_files()]
        code, stop = self._run_streamed(runtime, supervisor, blobs, self._launch(
            plan.command, prepared, files["stdout"], files["stderr"], f"{a.job_key}-{a.task_index}"),
            [(path, f"{prefix}/stdouterr/{path.name}") for path in (*files.values(), *per_process)], log, "command")
        outcome.exit_code = code
        if stop is not None:
            outcome.stop_reason, outcome.error = stop.reason, stop.error

    def _run_streamed(self, runtime: TaskRuntime, supervisor: Supervisor, blobs: OutputBlobs, launch: TaskLaunch,
                      streams: list[tuple[Path, str]], log: ExecutionLog,
                      what: str) -> tuple[int | None, StopRequest | None]:
        streamer = LogStreamer(blobs, streams, give_up=self.node.give_up).start()
        user = f"uid {launch.run_as.uid}" if launch.run_as else "the agent's user"
        try:
            running = runtime.start(launch)
            log.write(f"{what} started ({running.describe()}, {user})")
            if self.node.counters is not None:
                self.node.counters.watch(self.a.assignment_id, self.a.job_key, running)
            code, stop = supervisor.run(running)
            if stop is not None:
                log.write(f"{what} stopped ({stop.reason}), exit code {code}")
            else:
                log.write(f"{what} exited with code {code}")
            return code, stop
        finally:
            if self.node.counters is not None:
                self.node.counters.unwatch(self.a.assignment_id)
            streamer.close()

    def _upload(self, prepared: PreparedTask, blobs: OutputBlobs, outcome: Outcome, log: ExecutionLog) -> None:
        """Outputs and blob-mount changes go up whatever happened; a failure here is the task's error."""
        try:
            for output_id, held in (prepared.held.outputs.items() if prepared.held else []):
                count = upload_tree(blobs, Path(f"/proc/self/fd/{held.fd}"),
                                    f"{self.a.output_prefix.rstrip('/')}/outputs/{output_id}", self.node.give_up)
                log.write(f"output {output_id}: {count} file(s) uploaded")
            for volumes in prepared.volumes:
                for mount in volumes.blob_mounts:
                    count = mount.upload_changes()
                    log.write(f"blob mount {mount.local_dir}: {count} changed file(s) uploaded")
        except GaveUp:
            raise
        except Exception as error:
            log.write(f"upload failed: {type(error).__name__}: {error}")
            if outcome.error is None:
                outcome.error = {"code": "OutputUploadFailed", "message": f"{type(error).__name__}: {error}"}

    def _keep_log(self, prepared: PreparedTask, log: ExecutionLog) -> None:
        """A copy of the execution log beside stdout.txt (on a share, where users look for it)."""
        if prepared.held is None:
            return
        try:
            with open_file(prepared.held.stdouterr.entry(log.path.name), "w") as copy:
                copy.write(log.text())
        except OSError as error:  # the job put something else there: the blob is the log
            log.write(f"the log's copy in the stdout/stderr directory was not written: {error}")


def _end(log: ExecutionLog, outcome: Outcome) -> None:
    error = outcome.error or {}
    log.write(f"task ended: exit code {outcome.exit_code}"
              + (f", stopped ({outcome.stop_reason})" if outcome.stop_reason else "")
              + (f", error {error.get('code')}: {error.get('message')}" if error else ""))


def _close(streamer: LogStreamer, outcome: Outcome) -> None:
    try:
        streamer.close()
    except GaveUp:
        raise
    except Exception as error:
        if outcome.error is None:
            outcome.error = {"code": "OutputUploadFailed", "message": f"execution log: {type(error).__name__}: {error}"}


def tail_text(path: Path, limit: int = 2000) -> str:
    try:
        with open_file(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - limit))
            return f.read().decode(errors="replace").strip()
    except OSError:
        return ""
