"""The node agent process: registers the node, heartbeats, and handles its queue's messages.

Only messages the service signed for this node are acted on (`shared.adapters.message_signing`);
any other is moved to ``node-<id>-poison`` with the reason. Messages name their documents: an
``assign`` is fetched from the node API (``POST /nodeagent/assignment``) and run only when the
service confirms this node holds it now (a refusal means it is stale: nothing runs); a ``setup`` is
fetched likewise (``POST /nodeagent/setup``), and an ``exec`` (a command to run, see
shared.agent.node_exec) from ``POST /nodeagent/exec``.

Message handling is idempotent (every queue is at-least-once): an assignment id recorded in the
ledger never runs twice (a repeat of one that ended gets its recorded end: `shared.agent.reports`); a
repeated setup gets the recorded answer; a stop for an assignment that ended gets its recorded end, one
for an assignment never seen here is ignored. A message is deleted only after it is handled; one that
keeps failing is moved to ``node-<id>-poison`` with the reason after `MAX_DEQUEUE` attempts.

Storage goes through the agent's `NodeStorage` (keyed in the process topology, scoped on
machines). Mounts are emulated in the process topology (`shared.agent.mounts`) and real on machines
(`shared.agent.machine_mounts`: cluster volumes checked, job volumes mounted per task).

Exits: ``leave`` (tasks stop with "node-removed", the node queue is deleted, exit 0); SIGTERM
(tasks stop with "agent-stopped", exit 0; a second SIGTERM abandons reporting). A preemption
notice (see shared.agent.preemption) stops the tasks with "preempted", sends ``node-preempted``,
and the agent stays until the node is removed, answering new assignments with "preempted".
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azure.storage.queue import QueueMessage

from shared import telemetry
from shared.adapters.message_signing import BadMessage, MessageVerifier
from shared.agent import counters, reports
from shared.agent.counters import PerformanceCounters
from shared.agent.environment import SecretReader, base_env
from shared.agent.inventory import inventory
from shared.agent.isolation import JobIsolation, process_node
from shared.agent.layout import NodeLayout
from shared.agent.ledger import Ledger
from shared.agent.machine_mounts import MachineMounter
from shared.agent.node_api import NodeApi, NodeApiRefused
from shared.agent.node_exec import NodeExec
from shared.agent.node_mounts import NodeMounts
from shared.agent.node_storage import NodeStorage
from shared.agent.preemption import LocalPreemptNotice, ScheduledEventsPoller
from shared.agent.retry import Backoff, is_transient, with_retries
from shared.agent.setup import run_setup
from shared.agent.supervise import StopRequest, TaskControl
from shared.agent.task import NodeContext, TaskRunner
from shared.agent.transport import RECEIVE_BATCH, AgentChannel
from shared.domain.messages import (
    AssignedTask,
    Assignment,
    ExecCommand,
    Leave,
    NodeMessage,
    Setup,
    StopTask,
    node_message,
)

log = logging.getLogger(__name__)

MAX_DEQUEUE = 5
STOP_GRACE_S = 10.0
PREEMPT_GRACE_S = 10.0  # well inside the ~30 s Preempt notice
REPORT_WAIT_S = 120.0  # how long an exiting agent waits for its tasks to report
FETCH_DEADLINE_S = 60.0  # a message whose document cannot be fetched this long is left for redelivery


@dataclass
class AgentOptions:
    storage: NodeStorage
    api: NodeApi  # the service's node API: the documents messages name
    message_key: Callable[[], str]  # the public key node messages are signed with (base64)
    cluster_key: str
    node_id: str
    workdir: Path
    state_dir: Path
    read_secret: SecretReader | None = None  # Key Vault with the node's own identity (None: it has none)
    address: str = "127.0.0.1"
    ssh_port: int | None = None  # the node's sshd (machines), reported for remote login; None: no sshd
    heartbeat_s: float = 2.0
    mount_root: Path | None = None  # $AZ_BATCHAI_MOUNT_ROOT; None: <workdir>/mounts
    machine_mounts: MachineMounter | None = None  # real mounts (a machine); None: emulated mounts
    scheduled_events_url: str | None = None  # poll IMDS Scheduled Events for Preempt notices
    vm_name: str | None = None  # this VM's name in Scheduled Events
    declared_gpus: int | None = None  # GPUs the agent cannot see itself
    poll_max_s: float = 1.0
    poll_min_s: float = 0.1  # the first waits after activity (a message, a task's end), doubling up to poll_max_s
    isolation: JobIsolation | None = None  # how jobs are kept apart here; None: a process node's


class Agent:
    def __init__(self, options: AgentOptions) -> None:
        self.options = options
        self.layout = NodeLayout(options.workdir, options.state_dir, options.mount_root)
        self.stopping = threading.Event()  # the main loop ends
        self._active = threading.Event()  # a task ended or the agent stops: poll soon
        self.give_up = threading.Event()  # exit now, even without reporting
        self.preempted = threading.Event()
        self.exit_reason = "agent-stopped"
        self.leaving = False
        self.channel = AgentChannel(options.storage, options.cluster_key, options.node_id, give_up=self.give_up)
        options.workdir.mkdir(parents=True, exist_ok=True)
        self.ledger = Ledger(self.layout.ledger)
        self.inventory = inventory(options.address, options.declared_gpus, options.ssh_port)
        self.tasks: dict[str, TaskRunner] = {}
        self._tasks_lock = threading.Lock()
        self._setup_thread: threading.Thread | None = None
        self._setup_control = TaskControl()
        env = base_env(os.environ)
        self.mounts = NodeMounts(options.storage, options.state_dir, self.layout.mount_root, self.layout.sync_dir,
                                 options.machine_mounts, self.give_up, env)
        self.node = NodeContext(options.storage, self.layout, self.channel, int(self.inventory["gpus"]),
                                env, self.mounts.cluster, self.mounts.job, self.give_up,
                                options.read_secret, options.isolation or process_node(options.state_dir),
                                PerformanceCounters(options.node_id, options.cluster_key, int(self.inventory["gpus"]),
                                                    options.workdir))
        self._verifiers: dict[str, MessageVerifier] = {}
        self.execs = NodeExec(options.api, self.layout, self.node.base_env, self._task_of_job, self.give_up)

    # --- lifecycle ----------------------------------------------------------------------------

    def install_signals(self) -> None:
        """SIGTERM: stop gracefully (twice: give up reporting). Call from the main thread."""
        def on_term(*_: Any) -> None:
            if self.stopping.is_set():
                self.give_up.set()
            self.stopping.set()
            self._active.set()
        signal.signal(signal.SIGTERM, on_term)

    def run(self) -> int:
        self.channel.ensure_queues()
        reports.report_orphans(self.ledger, self.channel)
        self.channel.send("node-registered", inventory=self.inventory)
        log.info("node %s registered in %s: %s", self.options.node_id, self.options.cluster_key, self.inventory)
        threading.Thread(target=self._heartbeats, name="heartbeat", daemon=True).start()
        notice = LocalPreemptNotice(self.layout.preempt_file, self.preempt, self.stopping)
        if threading.current_thread() is threading.main_thread():
            notice.install_signal()
        notice.start()
        if self.options.scheduled_events_url:
            ScheduledEventsPoller(self.preempt, self.stopping, url=self.options.scheduled_events_url,
                                  vm_name=self.options.vm_name).start()
        self._loop()
        return self._shutdown()

    def _loop(self) -> None:
        """Poll the node queue: every poll_min_s right after a task ended or the node became ready
        (its next assignment is near), doubling to poll_max_s while nothing comes. A message does not
        make the polls faster: what follows an assignment is a stop, or the next assignment once the
        task ends."""
        delay = self.options.poll_min_s
        backoff = Backoff(initial=0.5, cap=15.0)
        while not self.stopping.is_set():
            if self._active.is_set():  # a task just ended: its node's next assignment is likely near
                self._active.clear()
                delay = self.options.poll_min_s
            try:
                messages = self.channel.receive()
            except Exception as error:
                if not is_transient(error):
                    raise
                delay = backoff.next_delay()
                log.warning("polling the node queue failed (%s); retrying in %.1f s", error, delay)
                self.stopping.wait(delay)
                continue
            backoff.reset()
            if not messages:
                self._active.wait(delay)
                delay = min(self.options.poll_max_s, delay * 2)
                continue
            for message in messages:
                self._handle(message)
                if self.stopping.is_set():
                    break
            if len(messages) < RECEIVE_BATCH:  # drained: what comes next comes when a task ends (or later)
                self._active.wait(delay)

    def _verified(self, message: QueueMessage) -> NodeMessage | None:
        """The message when the service signed it for this node; else it goes to the poison queue.
        Raises a transient error when the key cannot be had now (the message comes back later)."""
        key = self.options.message_key()
        try:
            if not key:
                raise BadMessage("this node has no key to verify messages with")
            verifier = self._verifiers.get(key) or self._verifiers.setdefault(key, MessageVerifier(key))
            return node_message(verifier.verify(str(message.content), self.options.node_id))
        except BadMessage as error:
            reason = f"refused: {error}"
        except (ValueError, TypeError, KeyError) as error:
            reason = f"unreadable message: {error}"
        log.error("rejecting a node message: %s", reason)
        self.channel.reject(message, reason)
        return None

    def _handle(self, message: QueueMessage) -> None:
        try:
            parsed = self._verified(message)
        except Exception as error:
            if not is_transient(error):
                raise
            log.warning("cannot verify a node message now (%s); it will be delivered again", error)
            return
        if parsed is None:
            return
        try:
            if isinstance(parsed, Assignment):
                self._assign(parsed)
            elif isinstance(parsed, StopTask):
                self._stop(parsed)
            elif isinstance(parsed, Setup):
                self._setup(parsed)
            elif isinstance(parsed, ExecCommand):
                self.execs.start(parsed.exec_id)
            elif isinstance(parsed, Leave):
                self.exit_reason, self.leaving = "node-removed", True
                self.stopping.set()
                self._active.set()
        except Exception as error:
            if (message.dequeue_count or 0) >= MAX_DEQUEUE:
                log.error("giving up on a %s message after %s attempts: %s", parsed.kind, message.dequeue_count, error)
                self.channel.reject(message, f"{type(error).__name__}: {error}")
                return
            log.exception("handling a %s message failed; it will be delivered again", parsed.kind)
            return
        self.channel.delete(message)

    def _shutdown(self) -> int:
        reason = self.exit_reason
        log.info("agent stopping (%s)", reason)
        self._setup_control.request(StopRequest(reason, STOP_GRACE_S))
        runners = self._runners()
        for runner in runners:
            runner.stop(reason, STOP_GRACE_S)
        for runner in runners:
            runner.thread.join(REPORT_WAIT_S)
        if self._setup_thread is not None:
            self._setup_thread.join(REPORT_WAIT_S)
        if self.leaving and not self.give_up.is_set():
            self.channel.delete_queues()
        return 0

    # --- messages -----------------------------------------------------------------------------

    def _runners(self) -> list[TaskRunner]:
        with self._tasks_lock:
            return list(self.tasks.values())

    def _task_of_job(self, job_key: str) -> TaskRunner | None:
        return next((r for r in self._runners() if r.a.job_key == job_key), None)

    def _fetch(self, message: Assignment) -> AssignedTask | None:
        """The task the message names, or None when the service says this node does not hold it."""
        try:
            task = with_retries(lambda: self.options.api.assignment(message), "fetching an assignment",
                                self.give_up, deadline_s=FETCH_DEADLINE_S)
        except NodeApiRefused as error:
            log.warning("assignment %s refused by the service (%s): stale, not run", message.assignment_id, error)
            return None
        if (task.assignment_id, task.job_key, task.task_index, task.attempt) != (
                message.assignment_id, message.job_key, message.task_index, message.attempt):
            log.error("the service answered assignment %s with another task: not run", message.assignment_id)
            return None
        return task

    def _assign(self, message: Assignment) -> None:
        with telemetry.span("node assignment", parent=message.traceparent, **{
                "batchai.node": self.options.node_id, "batchai.job": message.job_key,
                "batchai.assignment": message.assignment_id, "batchai.task_index": message.task_index}):
            self._take(message)

    def _take(self, message: Assignment) -> None:
        if reports.answer_repeat(self.ledger, self.channel, message.assignment_id):
            return
        task = None
        if not self.preempted.is_set():  # after a preemption notice new work is handed back unfetched
            task = self._fetch(message)
            if task is None:
                return
            self._count(task.cluster)
        if not self.ledger.accept(message.assignment_id, message.job_key, message.task_index):
            log.info("assignment %s was handled before; ignoring the repeat", message.assignment_id)
            return
        runner = None
        with self._tasks_lock:
            if task is not None and not self.preempted.is_set():
                runner = self.tasks[message.assignment_id] = TaskRunner(self.node, task, self._task_done,
                                                                        telemetry.traceparent())
        if runner is None:
            event = self.channel.send("task-exited", assignment_id=message.assignment_id, job_key=message.job_key,
                                      task_index=message.task_index, stop_reason="preempted")
            self.ledger.finish(message.assignment_id, event.to_json())
            return
        log.info("assignment %s: task %s of %s", message.assignment_id, message.task_index, message.job_key)
        runner.start()

    def _task_done(self, assignment_id: str) -> None:
        with self._tasks_lock:
            runner = self.tasks.get(assignment_id)
        self.ledger.finish(assignment_id, runner.report if runner else None)
        with self._tasks_lock:
            self.tasks.pop(assignment_id, None)
        self._active.set()

    def _stop(self, stop: StopTask) -> None:
        with self._tasks_lock:
            runner = self.tasks.get(stop.assignment_id)
        if runner is None:  # ended: its end is reported again (the safety pass asks when storage lost it)
            if not reports.answer_repeat(self.ledger, self.channel, stop.assignment_id):
                log.info("stop for assignment %s, which is not running here: ignored", stop.assignment_id)
            return
        runner.stop(stop.reason, stop.grace_seconds)

    def _answered(self, version: str) -> bool:
        """A setup of this version was handled before: answer as recorded (or wait for it to end)."""
        record = self.ledger.setup()
        if not record or record["key"] != version:
            return False
        if record["state"] == "ready":
            self.channel.send("node-ready")
        elif record["state"] == "unusable":
            self.channel.send("node-unusable", error=record["error"])
        elif self._setup_thread is None or not self._setup_thread.is_alive():
            return False  # it was running when an earlier agent died: run it again
        return True

    def _setup(self, message: Setup) -> None:
        if self._answered(message.version):
            return
        try:
            setup = with_retries(self.options.api.setup, "fetching the node setup", self.give_up,
                                 deadline_s=FETCH_DEADLINE_S)
        except NodeApiRefused as error:
            log.warning("node setup refused by the service (%s): stale, not run", error)
            return
        if setup.version != message.version and self._answered(setup.version):
            return
        self.ledger.set_setup(setup.version, "running")
        self._setup_thread = threading.Thread(target=self._run_setup, args=(setup.version, setup.cluster),
                                              name="setup", daemon=True)
        self._setup_thread.start()

    def _run_setup(self, key: str, cluster: dict[str, Any]) -> None:
        result = run_setup(self.node, cluster, self._setup_control)
        if result.ready:
            self._count(cluster)
            self.ledger.set_setup(key, "ready")
            self.channel.send("node-ready")
            self._active.set()  # its first assignment is near
        else:
            self.ledger.set_setup(key, "unusable", result.error)
            self.channel.send("node-unusable", error=result.error)
        log.info("node setup: %s", "ready" if result.ready else result.error)

    def _count(self, cluster: dict[str, Any]) -> None:
        settings = counters.settings_of(cluster)
        if settings and self.node.counters is not None:
            self.node.counters.enable(settings)

    # --- background ---------------------------------------------------------------------------

    def preempt(self, source: str) -> None:
        """The Preempt notice (from any source): stop and report every task, then `node-preempted`."""
        with self._tasks_lock:
            if self.preempted.is_set():
                return
            self.preempted.set()
            runners = list(self.tasks.values())
        log.warning("preemption notice (%s)", source)
        for runner in runners:
            runner.stop("preempted", PREEMPT_GRACE_S)
        for runner in runners:
            runner.thread.join(REPORT_WAIT_S)
        self.channel.send("node-preempted")

    def _heartbeats(self) -> None:
        while not self.stopping.is_set():
            try:
                self.channel.heartbeat(sorted(r.assignment_id for r in self._runners()))
            except Exception as error:  # the next beat is the retry; the agent must outlive storage
                log.warning("heartbeat failed: %s: %s", type(error).__name__, error)
            self.stopping.wait(self.options.heartbeat_s)
