"""The container task runtime: a job's task in its container, through the Docker Engine API.

Works with Docker and with podman's Docker-compatible service. A task whose job asks for a container
never falls back to the host: an unreachable engine is a `TaskStartError`.

A container runs the task's command under bash when the image has it, else sh, with the launch's
environment (the job's allow-listed one, see shared.agent.environment, minus the variables that would
hide the image's own, such as PATH; HOME is the job's), its bind mounts at the same paths, the host
network for multi-node jobs and the GPUs of the task: the node's GPU indices its assignment names,
as device requests (inside, the container sees only those, numbered from 0, so its
CUDA_VISIBLE_DEVICES is renumbered to match). It runs as the job's user (`run_as`), never as
root: in a rootful engine the container's root is the host's, which could read every bind and every
other job's files; an image that needs root for its setup must be built with it (its files stay
readable to any user), and the job's own directories are its user's. Its stdout
and stderr are streamed into the launch's files while it runs; the container is removed once they
are drained. Podman notes (see notes/containers.md): no ulimits are passed (any would replace the
engine's defaults), and containers are removed explicitly, never with auto-remove.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

import docker
import requests
from docker.errors import APIError, DockerException, NotFound
from docker.models.containers import Container
from docker.types import DeviceRequest

from shared.agent.confine import open_file
from shared.agent.container_images import SecretReader, ensure_image
from shared.agent.runtime import TaskLaunch, TaskStartError

DOCKER_SOCKET = "unix:///var/run/docker.sock"
PODMAN_SOCKET = "unix:///tmp/podman.sock"
LABEL_MANAGED = "batchai.managed"
LABEL_TASK = "batchai.task"
#: Variables of the host that must not reach a container: the image's own values win.
HOST_ONLY_ENV = frozenset(
    {"PATH", "HOME", "HOSTNAME", "PWD", "OLDPWD", "SHELL", "SHLVL", "USER", "LOGNAME", "TERM", "TMPDIR", "_"}
    | {"LD_LIBRARY_PATH", "LD_PRELOAD", "PYTHONHOME", "VIRTUAL_ENV", "DOCKER_HOST"}
)
ENGINE_HICCUP_ATTEMPTS = 10
# Runs the command with bash when the image has it (busybox images do not).
_SHELL_SCRIPT = 'if command -v bash >/dev/null 2>&1; then exec bash -c "$1"; fi; exec sh -c "$1"'


def default_base_url(environ: dict[str, str] | None = None, exists: Callable[[str], bool] = os.path.exists) -> str:
    """DOCKER_HOST; else Docker's socket; else podman's socket at /tmp/podman.sock when it exists."""
    environ = dict(os.environ) if environ is None else environ
    if environ.get("DOCKER_HOST"):
        return environ["DOCKER_HOST"]
    if not exists(DOCKER_SOCKET.removeprefix("unix://")) and exists(PODMAN_SOCKET.removeprefix("unix://")):
        return PODMAN_SOCKET
    return DOCKER_SOCKET


class DockerRuntime:
    """TaskRuntime over the Docker Engine API."""

    def __init__(
        self, base_url: str | None = None, read_secret: SecretReader | None = None, api_timeout: float = 120
    ) -> None:
        self.base_url = base_url or default_base_url()
        self.read_secret = read_secret
        self.api_timeout = api_timeout

    def client(self) -> docker.DockerClient:
        try:
            client = docker.DockerClient(base_url=self.base_url, timeout=int(self.api_timeout))
            client.ping()
        except (DockerException, requests.RequestException) as e:
            raise TaskStartError(
                "ContainerEngineUnavailable",
                f"the job needs a container and the container engine at {self.base_url} is unreachable ({e}); "
                "the task is not run on the host",
            ) from e
        return client

    def start(self, launch: TaskLaunch) -> ContainerTask:
        if not launch.container:
            raise TaskStartError("InvalidContainerSettings", "the launch has no containerSettings")
        client = self.client()
        image = ensure_image(client, launch.container.get("imageSourceRegistry") or {}, self.read_secret)
        try:
            container = client.containers.create(image.id, **create_options(launch))
        except APIError as e:
            raise TaskStartError("ContainerCreateFailed", f"cannot create the task's container: {e}") from e
        task = ContainerTask(container, launch)
        task.begin()
        return task

    def remove_tasks(self, task: str | None = None) -> int:
        """Remove this runtime's containers (of one task name, or all): cleanup after an agent restart."""
        label = f"{LABEL_TASK}={task}" if task is not None else f"{LABEL_MANAGED}=true"
        containers = self.client().containers.list(all=True, filters={"label": label})
        for c in containers:
            _ignore_gone(lambda c=c: c.remove(force=True))
        return len(containers)


def create_options(launch: TaskLaunch) -> dict[str, Any]:
    """The container's create options for a launch (no ulimits: see the module docstring)."""
    settings = launch.container or {}
    options: dict[str, Any] = {
        "entrypoint": ["/bin/sh", "-c"],
        "command": [_SHELL_SCRIPT, "batchai-task", launch.command],
        "environment": {k: v for k, v in launch.env.items() if k not in HOST_ONLY_ENV}
        | ({"HOME": launch.home} if launch.home else {}),
        "working_dir": launch.cwd or None,
        "volumes": {path: {"bind": path, "mode": "rw"} for path in launch.binds},
        "labels": {LABEL_MANAGED: "true", LABEL_TASK: launch.name, **launch.labels},
        "detach": True,
    }
    if launch.run_as is not None:
        options["user"] = f"{launch.run_as.uid}:{launch.run_as.gid}"
    if settings.get("shmSize"):
        options["shm_size"] = settings["shmSize"]
    if launch.host_network:
        options["network_mode"] = "host"
    if launch.gpu_ids:
        options["device_requests"] = [DeviceRequest(device_ids=[str(i) for i in launch.gpu_ids],
                                                    capabilities=[["gpu"]])]
        options["environment"]["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(len(launch.gpu_ids)))
    elif launch.gpus > 0 and launch.gpu_ids is None:
        options["device_requests"] = [DeviceRequest(count=launch.gpus, capabilities=[["gpu"]])]
    return options


class ContainerTask:
    """A started container: its logs stream into the launch's files; it is removed after they drain."""

    def __init__(self, container: Container, launch: TaskLaunch) -> None:
        self.container = container
        self.launch = launch
        self._exit_code: int | None = None
        self._lock = threading.Lock()
        self._streams: list[threading.Thread] = []
        self._stream_errors: list[BaseException] = []

    def describe(self) -> str:
        return f"container {self.container.id[:12]}"

    def begin(self) -> None:
        try:
            self.container.start()
        except APIError as e:
            _ignore_gone(lambda: self.container.remove(force=True))
            raise TaskStartError("ContainerStartFailed", f"the task's container did not start: {e}") from e
        for path, stdout in ((self.launch.stdout_path, True), (self.launch.stderr_path, False)):
            out = open_file(path, "ab")  # closed by its stream thread
            thread = threading.Thread(target=self._stream, args=(out, stdout), daemon=True, name=f"logs-{path}")
            thread.start()
            self._streams.append(thread)

    def _stream(self, out: BinaryIO, stdout: bool) -> None:
        try:
            with out:
                for chunk in self._follow_logs(stdout):
                    out.write(chunk)
                    out.flush()
        except APIError as e:
            if not _gone(e):
                self._stream_errors.append(e)
            # else the container is gone (removed under the task): its logs end here
        except Exception as e:  # kept and re-raised by poll/wait: the task's logs are incomplete
            self._stream_errors.append(e)

    def _follow_logs(self, stdout: bool) -> Iterator[bytes]:
        """The container's log stream; opening it inspects the container, which an exiting one can fail."""
        for attempt in range(ENGINE_HICCUP_ATTEMPTS):
            try:
                return self.container.client.api.logs(
                    self.container.id, stdout=stdout, stderr=not stdout, stream=True, follow=True
                )
            except APIError as e:
                if not _hiccup(e) or attempt == ENGINE_HICCUP_ATTEMPTS - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))  # nothing was read yet: opening again loses no output
        raise AssertionError("unreachable")

    def poll(self) -> int | None:
        if self._exit_code is not None:
            return self._exit_code
        try:
            self.container.reload()
        except APIError as e:
            if _hiccup(e):
                return None  # not known this time; the next poll or the wait answers
            if not _gone(e):
                raise
            return self._finish(None)
        state = self.container.attrs.get("State", {})
        if state.get("Status") in ("exited", "dead", "stopped"):
            return self._finish(int(state.get("ExitCode", -1)))
        return None

    def wait(self, timeout: float | None = None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            try:
                result = self.container.wait(timeout=None if remaining is None else max(1, math.ceil(remaining)))
            except (requests.ConnectionError, requests.ReadTimeout):
                continue  # the wait timed out (requests reports it as either): poll again
            except NotFound:
                return self._finish(None)
            return self._finish(int(result.get("StatusCode", -1)))
        return code

    def stop(self, grace_seconds: float) -> None:
        if self._exit_code is not None:
            return
        _ignore_gone(lambda: self.container.stop(timeout=max(0, math.ceil(grace_seconds))))
        if self.poll() is None:
            _ignore_gone(self.container.kill)
            self.wait(timeout=30)

    def _finish(self, exit_code: int | None) -> int:
        """Record the exit code, drain the logs, remove the container. Idempotent."""
        with self._lock:
            if self._exit_code is None:
                for thread in self._streams:
                    thread.join(timeout=60)
                _ignore_gone(lambda: self.container.remove(force=True))
                # a container removed by someone else has no exit code left: report it as killed
                self._exit_code = 137 if exit_code is None else exit_code
            if self._stream_errors:
                raise self._stream_errors[0]
            return self._exit_code


def _gone(error: APIError) -> bool:
    """A container removed under us: Docker answers 404, podman's compatible API sometimes 500 "no such container"."""
    return isinstance(error, NotFound) or "no such container" in str(error).lower()


def _hiccup(error: APIError) -> bool:
    """Podman's inspect of a container whose process is exiting: a 500 on /proc/<pid>, gone a moment later."""
    message = str(error).lower()
    return error.status_code == 500 and "no such process" in message and "/proc/" in message


def _ignore_gone(action: Callable[[], object]) -> None:
    """Run an idempotent cleanup action; a container that is already gone or stopped is fine."""
    try:
        action()
    except APIError as e:
        if not _gone(e) and e.status_code not in (304, 409):  # not modified / already stopped or being removed
            raise
