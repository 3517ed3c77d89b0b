"""Commands the service sent this node to run (``exec`` messages: `batchai cluster node exec` and
`job node exec` on nodes without an sshd). The agent fetches the command by reference, runs it, and
answers with its exit code and the tail of its stdout and stderr.

A cluster command runs as the agent's user in the node's working directory, as a login to the node
would. A job command runs in the environment of that job's task on this node: inside its running
container (docker exec, as the task's user, in its working directory, with its variables) when the job
has containerSettings, else as a process with the task's user, working directory and variables. A job
whose task is not running here (any more) answers an error. Commands past their time limit are stopped.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.agent.layout import NodeLayout, safe_name
from shared.agent.node_api import NodeApi, NodeApiRefused
from shared.agent.process_runtime import ProcessRuntime
from shared.agent.retry import with_retries
from shared.agent.runtime import TaskLaunch, TaskStartError
from shared.agent.task import TaskRunner

log = logging.getLogger(__name__)

EXIT_CODE_WAIT_S = 30.0  # beyond the command's own limit: how long the engine may take to record its end
OUTPUT_LIMIT = 30_000  # characters of each stream sent back (the service keeps as many)
STOP_GRACE_S = 5.0
FETCH_DEADLINE_S = 60.0


def exec_dir(layout: NodeLayout, exec_id: str) -> Path:
    return layout.workdir / "exec" / safe_name(exec_id)


class NodeExec:
    """Runs one exec request on its own thread (a long command never holds up the node's queue)."""

    def __init__(self, api: NodeApi, layout: NodeLayout, base_env: dict[str, str],
                 task_of: Callable[[str], TaskRunner | None], give_up: threading.Event) -> None:
        self.api = api
        self.layout = layout
        self.base_env = base_env
        self.task_of = task_of  # job key -> the running task of that job on this node
        self.give_up = give_up

    def start(self, exec_id: str) -> None:
        threading.Thread(target=self._run, args=(exec_id,), name=f"exec-{exec_id[:8]}", daemon=True).start()

    def _run(self, exec_id: str) -> None:
        try:
            request = with_retries(lambda: self.api.exec_command(exec_id), "fetching a command", self.give_up,
                                   deadline_s=FETCH_DEADLINE_S)
        except NodeApiRefused as error:
            log.warning("command %s refused by the service (%s): not run", exec_id, error)
            return
        directory = exec_dir(self.layout, exec_id)
        try:
            result = self.execute(request, directory)
        except TaskStartError as error:
            result = {"error": {"code": error.code, "message": error.message}}
        except Exception as error:  # the caller is told why it did not run (and the log keeps the trace)
            log.exception("command %s could not run", exec_id)
            result = {"error": {"code": "NodeAgentError", "message": f"{type(error).__name__}: {error}"}}
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        log.info("command %s: exit code %s", exec_id, result.get("exitCode"))
        with_retries(lambda: self.api.exec_result(exec_id, result), "answering a command", self.give_up)

    def execute(self, request: dict[str, Any], directory: Path) -> dict[str, Any]:
        """Run the request's command; its exitCode, stdout and stderr."""
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
        stdout, stderr = directory / "stdout.txt", directory / "stderr.txt"
        command, timeout = str(request["command"]), float(request["timeoutSeconds"])
        if request.get("jobKey"):
            runner = self.task_of(request["jobKey"])
            launch = runner.exec_launch(command, stdout, stderr) if runner is not None else None
            if launch is None:
                raise TaskStartError("JobNotRunningOnNode", "the job's task is not running on this node (any more)")
            if launch.container:
                return in_container(launch, timeout)
        else:
            launch = TaskLaunch(command=command, env=dict(self.base_env), cwd=str(self.layout.workdir),
                                stdout_path=str(stdout), stderr_path=str(stderr), name="node-exec")
        running = ProcessRuntime().start(launch)
        code = running.wait(timeout)
        if code is None:
            running.stop(STOP_GRACE_S)
            code = running.wait(STOP_GRACE_S)
        return {"exitCode": code, "stdout": _tail(stdout), "stderr": _tail(stderr)}


# The command under `timeout` where the image has one (coreutils' and busybox's both take -s KILL).
_LIMITED = 'if command -v timeout >/dev/null 2>&1; then exec timeout -s KILL "$2" sh -c "$1"; fi; exec sh -c "$1"'


def in_container(launch: TaskLaunch, timeout: float, base_url: str | None = None) -> dict[str, Any]:
    """`launch.command` run inside the job task's running container (found by its labels), as the task's
    user, in its working directory, with its variables."""
    from shared.agent import containers  # the docker package: only where jobs use containers

    client = containers.DockerRuntime(base_url).client()
    labels = [f"{containers.LABEL_TASK}={launch.name}", *(f"{k}={v}" for k, v in sorted(launch.labels.items()))]
    found = client.containers.list(filters={"label": labels, "status": "running"})
    if not found:
        raise TaskStartError("JobNotRunningOnNode", "the job's container is not running on this node")
    user = f"{launch.run_as.uid}:{launch.run_as.gid}" if launch.run_as is not None else ""
    env = {k: v for k, v in launch.env.items() if k not in containers.HOST_ONLY_ENV}
    api = client.api
    exec_id = api.exec_create(found[0].id, ["/bin/sh", "-c", _LIMITED, "node-exec", launch.command, str(int(timeout))],
                              workdir=launch.cwd or None, environment=env, user=user)["Id"]
    out, err = api.exec_start(exec_id, demux=True)
    return {"exitCode": _exit_code(api, exec_id, timeout),
            "stdout": (out or b"").decode(errors="replace")[-OUTPUT_LIMIT:],
            "stderr": (err or b"").decode(errors="replace")[-OUTPUT_LIMIT:]}


def _exit_code(api: Any, exec_id: str, timeout: float) -> int | None:
    """The exec's exit code once the engine has recorded it: right after the output ends the inspection
    may still say Running (podman records the code a moment later), so it is asked again until it does
    not, for as long as the command itself may run."""
    deadline = time.monotonic() + timeout + EXIT_CODE_WAIT_S
    while True:
        state = api.exec_inspect(exec_id)
        if not state.get("Running") and state.get("ExitCode") is not None:
            return int(state["ExitCode"])
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)


def _tail(path: Path) -> str:
    try:
        with path.open("rb") as stream:
            stream.seek(0, 2)
            stream.seek(max(0, stream.tell() - 4 * OUTPUT_LIMIT))
            return stream.read().decode(errors="replace")[-OUTPUT_LIMIT:]
    except FileNotFoundError:
        return ""
