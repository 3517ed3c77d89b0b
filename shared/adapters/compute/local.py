"""The local compute provider: every instance is a node agent process on this machine.

Instance ids are `{6 hex of the cluster key}-{n}` (lowercase, queue-name safe, never reused while
the state directory lives). Each instance has its working directory `local_paths.node_dir(state,
id)` holding `instance.json` (cluster key, the agent's pid and start time, the node's, state) and
`agent.log`: that record is the provider's observation of what it started, not a coordination
mechanism.

An agent process has no managed identity: the provider mints it a node token
(`shared.adapters.node_tokens`: the node's working directory holds it in `node-token`, 0600; the
service keeps its hash; it is revoked when the instance is gone), with which the agent fetches its
tasks from the service (`NodeService`: the URL, the CA, the public key of the service's message
signatures). Its environment is the provider's minus every BATCHAI_* setting the agent does not
need (no service keys: storage it reaches with the connection string, the laptop topology's own).
A node of a GPU size is declared the size's GPUs (BATCHAI_NODE_GPUS): its jobs get GPU indices and
slots as on a VM of that size, whether or not this machine has GPUs.

A node is its own process (`local_node.py`, in a session of its own) running the agent: the
processes of a node die with its agent, as a VM's die with the VM, and neither the trigger host's
signals nor its death reach a node, so a restarted host finds its nodes still running. Removal
never blocks: it sends `Leave` on the node's queue, then a background timer sends the agent SIGTERM
and, after the grace, SIGKILL; later observations finish what a dead host left half done.
`stop_all` powers every node off (the stack stops: the service finds them gone at its next start and
requeues their jobs). Processes a node left behind anyway (its own process was killed) are killed
when the node is observed dead.
Low-priority clusters behave as dedicated ones here; `preempt` simulates an eviction notice.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from shared.adapters import local_paths, message_signing, node_tokens, storage
from shared.adapters.compute import vm_sizes
from shared.adapters.compute.local_processes import Pid, kill_leftovers, start_node
from shared.adapters.compute.port import ClusterSpec, Instance
from shared.config import Settings
from shared.domain.messages import Leave

#: (cluster key, node id, working directory) -> argv of the process that is the node.
CommandFactory = Callable[[str, str, Path], list[str]]

RECORD = "instance.json"
REMOVED = "instance.removed.json"
NODE_TOKEN = "node-token"
#: The settings an agent process reads (see shared.agent.__main__); no other BATCHAI_* reaches it.
AGENT_SETTINGS = frozenset({"BATCHAI_STORAGE_CONNECTION_STRING", "BATCHAI_STATE_DIR", "BATCHAI_ON_AZURE",
                            "BATCHAI_AGENT_POLL_MAX_S", "BATCHAI_AGENT_POLL_MIN_S", "BATCHAI_NODE_SERVICE_URL",
                            "BATCHAI_NODE_CA_FILE", "BATCHAI_MESSAGE_PUBLIC_KEY", "BATCHAI_TELEMETRY_DIR"})
REPO_ROOT = Path(__file__).resolve().parents[3]

_lock = threading.RLock()


def agent_command(heartbeat_s: float = 2.0) -> CommandFactory:
    def command(cluster_key: str, node_id: str, workdir: Path) -> list[str]:
        return [sys.executable, "-m", "shared.agent", "--cluster-key", cluster_key, "--node-id", node_id,
                "--workdir", str(workdir), "--address", "127.0.0.1", "--heartbeat-s", str(heartbeat_s)]
    return command


def cluster_prefix(cluster_key: str) -> str:
    return hashlib.sha256(cluster_key.encode()).hexdigest()[:6]


@dataclass(frozen=True)
class NodeService:
    """What the provider's agents need of the service, and the key the provider signs `Leave` with."""

    url: str = ""  # where agents fetch their tasks (BATCHAI_NODE_SERVICE_URL)
    ca_file: str = ""  # the CA that URL's certificate is signed by (BATCHAI_NODE_CA_FILE)
    message_key: str = ""  # the service's message signing key (its public half goes to agents)

    @classmethod
    def from_settings(cls, settings: Settings) -> NodeService:
        return cls(settings.azure.node_service_url, settings.azure.node_ca_file, settings.message_key)

    def agent_env(self) -> dict[str, str]:
        public = message_signing.public_key_of(self.message_key) if self.message_key else ""
        return {"BATCHAI_NODE_SERVICE_URL": self.url, "BATCHAI_NODE_CA_FILE": self.ca_file,
                "BATCHAI_MESSAGE_PUBLIC_KEY": public}

    def sign(self, message_json: str, node_id: str) -> str:
        return message_signing.MessageSigner(self.message_key).sign(message_json, node_id) \
            if self.message_key else message_json


def agent_environment(environ: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    """The provider's environment without the service's settings (keys among them)."""
    return {k: v for k, v in environ.items()
            if (not k.startswith("BATCHAI_") or k in AGENT_SETTINGS) and not k.startswith("AzureWebJobs")}


class LocalProvider:
    name = "local"

    def __init__(self, state_dir: Path, conn: str, command: CommandFactory | None = None,
                 leave_wait_s: float = 3.0, grace_s: float = 10.0, extra_env: dict[str, str] | None = None,
                 service: NodeService | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.conn = conn
        self.command = command or agent_command()
        self.leave_wait_s = leave_wait_s
        self.grace_s = grace_s
        self.extra_env = dict(extra_env or {})
        self.service = service or NodeService()

    # --- the port -------------------------------------------------------------------------

    def reconcile(self, spec: ClusterSpec, target: int, remove: Sequence[str] = ()) -> None:
        with _lock:
            for node_id in remove:
                self._remove(node_id)
            live = [i for i in self.list_instances(spec.cluster_key) if i.state in ("creating", "running")]
            for _ in range(max(0, target - len(live))):
                self._start(spec.cluster_key, vm_sizes.gpu_count(spec.vm_size))

    def list_instances(self, cluster_key: str) -> list[Instance]:
        with _lock:
            found = []
            for node_id, record in self._records(cluster_key):
                instance = self._observe(node_id, record)
                if instance is not None:
                    found.append(instance)
            return found

    def delete_cluster(self, cluster_key: str) -> None:
        with _lock:
            for node_id, _ in self._records(cluster_key):
                self._remove(node_id)

    # --- local extras ---------------------------------------------------------------------

    def preempt(self, node_id: str) -> bool:
        """Send the agent the simulated eviction notice (SIGUSR1). False when it is not running."""
        record = _read(self._dir(node_id) / RECORD)
        if record is None or not _alive(record):
            return False
        _agent(record).signal(signal.SIGUSR1)
        return True

    def clusters(self) -> set[str]:
        """The cluster keys that have instance records (live or being removed)."""
        return {r["cluster"] for _, r in _all_records(self.state_dir)}

    # --- internals ------------------------------------------------------------------------

    def _dir(self, node_id: str) -> Path:
        return local_paths.node_dir(self.state_dir, node_id)

    def _records(self, cluster_key: str) -> list[tuple[str, dict[str, Any]]]:
        prefix = cluster_prefix(cluster_key)
        return [(n, r) for n, r in _all_records(self.state_dir, f"{prefix}-*") if r["cluster"] == cluster_key]

    def _new_id(self, cluster_key: str) -> str:
        prefix = cluster_prefix(cluster_key)
        root = self.state_dir / "nodes"
        root.mkdir(parents=True, exist_ok=True)
        used = [int(p.name.rsplit("-", 1)[1]) for p in root.glob(f"{prefix}-*") if p.name.rsplit("-", 1)[1].isdigit()]
        n = max(used, default=0) + 1
        while True:
            try:
                (root / f"{prefix}-{n}").mkdir()
                return f"{prefix}-{n}"
            except FileExistsError:
                n += 1

    def _start(self, cluster_key: str, gpus: int = 0) -> str:
        node_id = self._new_id(cluster_key)
        workdir = self._dir(node_id)
        storage.ensure_queue(self.conn, storage.node_queue_name(node_id))
        token = node_tokens.mint()
        _write_private(workdir / NODE_TOKEN, token)
        node_tokens.store(self.conn, cluster_key, node_id, token)
        env = {**agent_environment(os.environ), **self.service.agent_env(), **self.extra_env,
               "BATCHAI_STORAGE_CONNECTION_STRING": self.conn, "BATCHAI_STATE_DIR": str(self.state_dir),
               "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)}
        if gpus:
            env["BATCHAI_NODE_GPUS"] = str(gpus)  # the size's GPUs, which this machine need not have
        node, agent = start_node(self.command(cluster_key, node_id, workdir), workdir, env)
        _write(workdir / RECORD, {"cluster": cluster_key, "pid": agent.pid, "created": agent.created,
                                  "node": node.pid, "nodeCreated": node.created, "startedAt": time.time(),
                                  "state": "running", "deleteBy": None})
        return node_id

    def _remove(self, node_id: str) -> None:
        path = self._dir(node_id) / RECORD
        record = _read(path)
        if record is None:
            return  # never existed or already gone
        if record["state"] == "deleting":
            self._observe(node_id, record)
            return
        if _alive(record):
            with contextlib.suppress(ResourceNotFoundError):
                storage.queue(self.conn, storage.node_queue_name(node_id)).send_message(
                    self.service.sign(Leave("node removed from the cluster").to_json(), node_id))
        record.update(state="deleting", deleteBy=time.time() + self.leave_wait_s + self.grace_s)
        _write(path, record)
        if not _alive(record):
            self._finish(node_id, record)
            return
        threading.Thread(target=_stop_later, args=(record, self.leave_wait_s, self.grace_s),
                         name=f"stop-{node_id}", daemon=True).start()

    def _observe(self, node_id: str, record: dict[str, Any]) -> Instance | None:
        alive = _alive(record)
        if record["state"] == "deleting":
            if alive and record.get("deleteBy") and time.time() > record["deleteBy"]:
                _agent(record).signal(signal.SIGKILL)
                alive = _alive(record)
            if not alive:
                self._finish(node_id, record)
                return None
            return Instance(node_id, "deleting", "127.0.0.1")
        if alive:
            return Instance(node_id, "running", "127.0.0.1")
        _end_node(self._dir(node_id), record)
        code = (_node(record) or _agent(record)).exit_code()
        detail = f"the node agent exited with code {code}" if code is not None else "the node agent is not running"
        return Instance(node_id, "failed", "127.0.0.1", detail + f" (log: {self._dir(node_id) / 'agent.log'})")

    def _finish(self, node_id: str, record: dict[str, Any]) -> None:
        """The process is gone: end what it left running, retire its record and its queue."""
        workdir = self._dir(node_id)
        _end_node(workdir, record)
        (_node(record) or _agent(record)).forget()
        with contextlib.suppress(FileNotFoundError):
            os.replace(workdir / RECORD, workdir / REMOVED)
        with contextlib.suppress(ResourceNotFoundError):
            storage.queue(self.conn, storage.node_queue_name(node_id)).delete_queue()
        node_tokens.revoke(self.conn, record["cluster"], node_id)


def stop_all(state_dir: Path, grace_s: float = 10.0) -> int:
    """Power off every local node recorded under `state_dir`: each node's processes are killed at once
    and nothing is reported; the records are retired, so the service finds the instances gone at its
    next start and requeues their jobs. Returns how many were running. For stopping the stack."""
    records = [(n, r) for n, r in _all_records(Path(state_dir)) if _alive(r) or _node_alive(r)]
    for _, record in records:
        if _node_alive(record):
            _node(record).signal(signal.SIGTERM)  # type: ignore[union-attr]
        else:  # its node process is gone (killed), or it was started before nodes had one
            _agent(record).signal(signal.SIGKILL)
    deadline = time.monotonic() + grace_s
    for _, record in records:
        process = _node(record) or _agent(record)
        if not process.wait(max(0.0, deadline - time.monotonic())):
            process.signal(signal.SIGKILL)
            process.wait(5.0)
    for node_id, record in _all_records(Path(state_dir)):
        workdir = local_paths.node_dir(Path(state_dir), node_id)
        _end_node(workdir, record)
        (_node(record) or _agent(record)).forget()
        with contextlib.suppress(FileNotFoundError):
            os.replace(workdir / RECORD, workdir / REMOVED)
    return len(records)


def _agent(record: dict[str, Any]) -> Pid:
    return Pid(record["pid"], record.get("created"))


def _node(record: dict[str, Any]) -> Pid | None:
    """The node's own process (None in records of nodes started without one)."""
    return Pid(record["node"], record.get("nodeCreated")) if record.get("node") else None


def _alive(record: dict[str, Any]) -> bool:
    return _agent(record).alive()


def _node_alive(record: dict[str, Any]) -> bool:
    node = _node(record)
    return node is not None and node.alive()


def _end_node(workdir: Path, record: dict[str, Any]) -> None:
    """The agent is gone. Its node ends everything it ran; when the node's own process is gone too,
    nothing did, and what the node left is killed here (once)."""
    node = _node(record)
    if node is not None and node.alive() and not node.wait(5.0):
        return  # still killing its processes: a later observation looks again
    if record.get("leftoversKilled"):
        return
    kill_leftovers(workdir)
    path = workdir / RECORD
    if _read(path) is not None:
        record["leftoversKilled"] = True
        _write(path, record)


def _stop_later(record: dict[str, Any], leave_wait_s: float, grace_s: float) -> None:
    agent = _agent(record)
    if agent.wait(leave_wait_s):
        return
    agent.signal(signal.SIGTERM)
    if agent.wait(grace_s):
        return
    agent.signal(signal.SIGKILL)
    agent.wait(5.0)


def _all_records(state_dir: Path, pattern: str = "*") -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted((state_dir / "nodes").glob(f"{pattern}/{RECORD}")):
        record = _read(path)
        if record is not None:
            found.append((path.parent.name, record))
    return found


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def _write_private(path: Path, text: str) -> None:
    """A file only its owner may read (created so: never readable by others, not even briefly)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _write(path: Path, record: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)
