"""Node agent fixtures: real agent processes against the session's Azurite and the service's node API
in-process (tests/nodeagent/service.py), as the local provider starts them (a node token, the
service's URL, CA and message key), and the events they send. `AgentProc.send` does what the
service does: it records the assignment the message names before it sends it, signed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shared.adapters import storage
from shared.adapters.compute.local import NODE_TOKEN
from shared.domain.messages import AssignedTask, NodeAddress, NodeMessage
from shared.emulator.issuer import IssuerServer
from tests.nodeagent import service
from tests.nodeagent.service import CredentialsService
from tests.polling import wait_until  # noqa: F401 - shared by this package's tests

REPO = Path(__file__).resolve().parents[2]
SUB, RG, WS, EXP = "00000000-0000-0000-0000-000000000000", "demo", "ws", "exp"


class Events:
    """Everything the agents sent to node-events, drained into memory (tests filter by node id)."""

    def __init__(self, conn: str) -> None:
        self.queue = storage.queue(conn, storage.Q_EVENTS)
        self.seen: list[dict[str, Any]] = []

    def drain(self) -> None:
        for message in self.queue.receive_messages(max_messages=32, visibility_timeout=30):
            self.seen.append(json.loads(message.content))
            self.queue.delete_message(message)

    def of(self, node_id: str, kind: str | None = None, assignment_id: str | None = None) -> list[dict[str, Any]]:
        self.drain()
        return [e for e in self.seen if e["node_id"] == node_id and (kind is None or e["kind"] == kind)
                and (assignment_id is None or e.get("assignment_id") == assignment_id)]

    def starts(self, node_id: str, assignment_id: str) -> list[str]:
        """Every report of the task's start: its task-started events, and the start its task-exited events
        carry (a task that ended before its task-started was due)."""
        return [e["at"] if e["kind"] == "task-started" else e["started_at"]
                for e in self.of(node_id, None, assignment_id)
                if e["kind"] == "task-started" or (e["kind"] == "task-exited" and e.get("started_at"))]

    def wait(self, node_id: str, kind: str, assignment_id: str | None = None, timeout: float = 30) -> dict[str, Any]:
        found = wait_until(lambda: self.of(node_id, kind, assignment_id), timeout,
                           what=f"{kind} from {node_id} ({assignment_id})")
        return found[0]


@dataclass
class AgentProc:
    conn: str
    cluster_key: str
    node_id: str
    workdir: Path
    state_dir: Path
    process: subprocess.Popen[bytes]
    log: Path
    service: CredentialsService

    @property
    def mount_root(self) -> Path:
        return self.workdir / "mounts"

    def send(self, message: AssignedTask | NodeMessage) -> None:
        """An `AssignedTask`: hold it for this node (as a scheduling pass does) and send its ``assign``;
        any other message: send it as it is. Signed, as the service sends."""
        if isinstance(message, AssignedTask):
            message = self.service.hold(self.cluster_key, self.node_id, message)
        self.service.send(self.node_id, message, self.conn)

    def send_setup(self, cluster: dict[str, Any]) -> None:
        """Join a cluster with these properties (as the service answers a registration)."""
        self.send(self.service.setup(self.cluster_key, self.node_id, cluster))

    def send_raw(self, text: str) -> None:
        storage.ensure_queue(self.conn, storage.node_queue_name(self.node_id)).send_message(text)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def queue_empty(self) -> bool:
        props = storage.queue(self.conn, storage.node_queue_name(self.node_id)).get_queue_properties()
        return props.approximate_message_count == 0


def job_props(command: str, **extra: Any) -> dict[str, Any]:
    props: dict[str, Any] = {"customToolkitSettings": {"commandLine": command}, "nodeCount": 1,
                             "jobOutputDirectoryPathSegment": uuid.uuid4().hex,
                             "stdOutErrPathPrefix": "$AZ_BATCHAI_MOUNT_ROOT/logs"}
    props.update(extra)
    return props


def assignment(agent: AgentProc | str, job: dict[str, Any], name: str | None = None, task_index: int = 0,
               cluster: dict[str, Any] | None = None) -> AssignedTask:
    """Task `task_index` of a gang whose node of that rank is `agent` (or the node of that id; the other
    ranks are placeholders)."""
    node_id = agent if isinstance(agent, str) else agent.node_id
    gang = [NodeAddress(f"peer{i}", "127.0.0.2") for i in range(task_index)] + [NodeAddress(node_id, "127.0.0.1")]
    name = name or f"job{uuid.uuid4().hex[:8]}"
    return AssignedTask(
        assignment_id=uuid.uuid4().hex, job_key=f"{SUB}|{RG}|{WS}|{EXP}|{name}",
        job_arm_id=(f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.BatchAI/workspaces/{WS}"
                    f"/experiments/{EXP}/jobs/{name}"),
        attempt=1, task_index=task_index, nodes=gang, job=job,
        cluster=cluster or {}, output_container=storage.C_OUTPUTS,
        output_prefix=storage.output_prefix(WS, EXP, name, job["jobOutputDirectoryPathSegment"]))


def blob_text(conn: str, name: str) -> str | None:
    blob = storage.container(conn, storage.C_OUTPUTS).get_blob_client(name)
    if not blob.exists():
        return None
    return blob.download_blob().readall().decode()


def stop_process(process: subprocess.Popen[bytes], grace_s: float = 20.0) -> int | None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    return process.returncode


@pytest.fixture(scope="session")
def events(storage_conn: str) -> Events:
    return Events(storage_conn)


@pytest.fixture(scope="session")
def node_api(api_endpoint: dict[str, str], storage_conn: str, issuer_server: IssuerServer,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[CredentialsService]:
    yield service.acquire(api_endpoint, storage_conn, issuer_server, tmp_path_factory.mktemp("node-service"))
    service.release()


def new_node_id() -> str:
    return f"n{uuid.uuid4().hex[:10]}"


def new_cluster_key() -> str:
    return f"{SUB}|{RG}|{WS}|c{uuid.uuid4().hex[:6]}"


def process_node_env(node_api: CredentialsService) -> dict[str, str]:
    """What the local provider gives a node: the service's URL and CA, the key messages are signed with."""
    return {"BATCHAI_NODE_SERVICE_URL": node_api.url, "BATCHAI_NODE_CA_FILE": node_api.ca_file,
            "BATCHAI_MESSAGE_PUBLIC_KEY": node_api.public_key}


@pytest.fixture
def start_agent(storage_conn: str, node_api: CredentialsService,
                tmp_path: Path) -> Iterator[Callable[..., AgentProc]]:
    started: list[AgentProc] = []
    state_dir = tmp_path / "state"

    def start(heartbeat_s: float = 1.0, env: dict[str, str] | None = None, conn: str | None = None,
              cluster_key: str | None = None, node_id: str | None = None) -> AgentProc:
        conn = conn or storage_conn
        node_id = node_id or new_node_id()
        cluster_key = cluster_key or new_cluster_key()
        workdir = tmp_path / node_id
        workdir.mkdir(parents=True)
        token = node_api.mint_node_token(cluster_key, node_id)
        fd = os.open(workdir / NODE_TOKEN, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token)
        log = tmp_path / f"{node_id}.log"
        full_env = {**{k: v for k, v in os.environ.items() if not k.startswith("BATCHAI_")},
                    "BATCHAI_STORAGE_CONNECTION_STRING": conn, "BATCHAI_STATE_DIR": str(state_dir),
                    "PYTHONPATH": str(REPO), **process_node_env(node_api), **(env or {})}
        with open(log, "ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "shared.agent", "--cluster-key", cluster_key, "--node-id", node_id,
                 "--workdir", str(workdir), "--heartbeat-s", str(heartbeat_s)],
                cwd=REPO, env=full_env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        agent = AgentProc(conn, cluster_key, node_id, workdir, state_dir, process, log, node_api)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        stop_process(agent.process)
