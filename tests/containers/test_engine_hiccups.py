"""A container task outlives podman's transient 500 on inspecting a container whose process is exiting.

Podman answers `GET /containers/<id>/json` with 500 "read /proc/<pid>/cgroup: no such process" for a
moment while a container's process exits. docker-py inspects the container when it opens the log
stream, the task polls it and the performance counters look up its pid: none may fail the task. A
wire-level fake of the engine's API (on loopback) answers that 500 on chosen inspects; the real
docker-py client talks to it.
"""

from __future__ import annotations

import json
import struct
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import docker
import pytest

from shared.agent.containers import ContainerTask
from shared.agent.counters import pid_of
from shared.agent.runtime import TaskLaunch

CONTAINER = "c0ffee" * 10
HICCUP = {"message": "read /proc/15539/cgroup: no such process"}


class FakeEngine:
    """The engine's state: which inspects answer the 500, and what the container printed."""

    def __init__(self, failing_inspects: set[int]) -> None:
        self.failing_inspects = failing_inspects
        self.inspects = 0
        self.exited = threading.Event()
        self.removed = False
        self.lock = threading.Lock()

    def inspect(self) -> tuple[int, dict]:
        with self.lock:
            self.inspects += 1
            if self.inspects in self.failing_inspects:
                return 500, HICCUP
        status = "exited" if self.exited.is_set() else "running"
        return 200, {"Id": CONTAINER, "Config": {"Tty": False}, "State": {"Status": status, "ExitCode": 0}}


def _handler(engine: FakeEngine) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _json(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            path = self.path.split("?")[0].split("/", 2)[-1]  # drop the /v1.xx prefix
            if path.endswith("/json"):
                self._json(*engine.inspect())
            elif path.endswith("/logs"):
                stream = 1 if "stdout=1" in self.path else 2
                payload = b"hello from the task\n" if stream == 1 else b""
                frame = struct.pack(">BxxxL", stream, len(payload)) + payload if payload else b""
                self.send_response(200)
                self.send_header("Content-Type", "application/vnd.docker.raw-stream")
                self.send_header("Content-Length", str(len(frame)))
                self.end_headers()
                self.wfile.write(frame)
            else:
                self._json(404, {"message": f"no route {self.path}"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            if self.path.split("?")[0].endswith("/start"):
                engine.exited.set()  # the command ends at once
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif self.path.split("?")[0].endswith("/wait"):
                engine.exited.wait(timeout=60)
                self._json(200, {"StatusCode": 0})
            else:
                self._json(404, {"message": f"no route {self.path}"})

        def do_DELETE(self) -> None:
            engine.removed = True
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client closing its log stream early resets the connection: not news


@pytest.fixture
def engine_at(request: pytest.FixtureRequest) -> Iterator[tuple[FakeEngine, str]]:
    engine = FakeEngine(set(request.param))
    server = QuietServer(("127.0.0.1", 0), _handler(engine))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield engine, f"tcp://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _launch(tmp_path: Path) -> TaskLaunch:
    return TaskLaunch(
        command="echo hello from the task",
        env={},
        cwd=str(tmp_path),
        stdout_path=str(tmp_path / "stdout.txt"),
        stderr_path=str(tmp_path / "stderr.txt"),
        container={"imageSourceRegistry": {"image": "localhost/busybox:test"}},
        name="hiccup",
    )


@pytest.mark.parametrize("engine_at", [{1, 2, 3}, {1, 2, 3, 4, 5, 6}], indirect=True, ids=["logs", "logs-and-poll"])
def test_a_transient_inspect_500_neither_fails_the_task_nor_loses_its_output(
    engine_at: tuple[FakeEngine, str], tmp_path: Path
) -> None:
    engine, url = engine_at
    client = docker.DockerClient(base_url=url, version="1.41", timeout=30)
    task = ContainerTask(client.containers.prepare_model({"Id": CONTAINER}), _launch(tmp_path))
    task.begin()
    assert task.wait(timeout=60) == 0
    assert (tmp_path / "stdout.txt").read_text() == "hello from the task\n"
    assert engine.inspects > len(engine.failing_inspects)  # the failing inspects were met, and passed
    assert engine.removed


@pytest.mark.parametrize("engine_at", [set(range(1, 100))], indirect=True, ids=["persistent"])
def test_an_inspect_500_that_persists_is_reported(engine_at: tuple[FakeEngine, str], tmp_path: Path) -> None:
    engine, url = engine_at
    client = docker.DockerClient(base_url=url, version="1.41", timeout=30)
    task = ContainerTask(client.containers.prepare_model({"Id": CONTAINER}), _launch(tmp_path))
    task.begin()
    with pytest.raises(docker.errors.APIError, match="no such process"):
        task.wait(timeout=60)


@pytest.mark.parametrize("engine_at", [{1}], indirect=True, ids=["once"])
def test_the_counters_skip_a_container_they_cannot_inspect(engine_at: tuple[FakeEngine, str]) -> None:
    _, url = engine_at
    client = docker.DockerClient(base_url=url, version="1.41", timeout=30)
    task = SimpleNamespace(container=client.containers.prepare_model({"Id": CONTAINER}))
    assert pid_of(task) is None  # the task ended as it was to be watched: nothing to observe
