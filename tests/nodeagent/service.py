"""The service as nodes meet it, shared by the node tests (tests/agent, tests/nodeagent): the API
served in-process over https (tests/conftest.py `api_endpoint`) trusting the session's token issuer
for machines' tokens, signing node messages with its key, reading the stack's Key Vault stand-in with
its own (local) identity for nodes that have none. One per test session: both packages' session
fixtures hand out the same one (`acquire`/`release`), so the process environment the in-process
API reads stays one."""

from __future__ import annotations

import dataclasses
import json
import os
import ssl
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from shared.adapters import message_signing, node_tokens, sched_store, storage
from shared.adapters.resource_store import ResourceStore
from shared.config import Settings
from shared.domain.keys import ClusterRef, JobRef
from shared.domain.messages import AssignedTask, Assignment, NodeMessage, Setup, node_view, setup_version
from shared.emulator.issuer import KEY_FILE, Issuer, IssuerServer
from shared.emulator.keyvault import KeyVault
from shared.localstack.tls import ensure_tls
from shared.services.assignments import send_to_node

COMPUTE_SUB, COMPUTE_RG = "00000000-0000-0000-0000-0000000000c1", "batchai-compute"
AUDIENCE = "api://batchai-nodes"


@dataclass
class CredentialsService:
    url: str
    ca_file: str
    conn: str
    issuer: Issuer
    message_key: str  # the service's signing key (private)
    vault: KeyVault

    @property
    def public_key(self) -> str:
        return message_signing.public_key_of(self.message_key)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=ssl.create_default_context(cafile=self.ca_file), timeout=30)

    def post(self, path: str, body: Any, token: str | None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        with self.client() as client:
            return client.post(path, content=json.dumps(body), headers=headers)

    # --- what the service does for a node -------------------------------------------------------

    def signed(self, message: NodeMessage, node_id: str) -> str:
        """`message` signed for the node, as the service signs it."""
        return message_signing.MessageSigner(self.message_key).sign(message.to_json(), node_id)

    def settings(self, conn: str | None = None) -> Settings:
        """The service's settings (storage: the account `conn`, else the service's)."""
        return dataclasses.replace(Settings.from_env(), storage_connection_string=conn or self.conn,
                                   message_key=self.message_key)

    def send(self, node_id: str, message: NodeMessage, conn: str | None = None) -> None:
        """Put `message` on the node's queue as the service does (`assignments.send_to_node`: signed)."""
        send_to_node(self.settings(conn), node_id, message)

    def setup(self, cluster_key: str, node_id: str, properties: dict[str, Any]) -> Setup:
        """What the service does when the node registers: the cluster's document, the node's row
        (preparing), and the `setup` message naming the version of what the node needs."""
        self.put_cluster(cluster_key, properties)
        self.node_row(cluster_key, node_id, "preparing", self.held(cluster_key, node_id))
        return Setup(cluster_key, setup_version(node_view(properties)))

    def mint_node_token(self, cluster_key: str, node_id: str) -> str:
        token = node_tokens.mint()
        node_tokens.store(self.conn, cluster_key, node_id, token)
        return token

    def put_cluster(self, cluster_key: str, properties: dict[str, Any]) -> None:
        ref = ClusterRef.from_key(cluster_key)
        _put(ResourceStore(self.conn, storage.T_CLUSTERS), ref.workspace.child_pk, ref.name.lower(),
             {"id": ref.arm_id, "name": ref.name, "properties": properties, "internal": {}})

    def node_row(self, cluster_key: str, node_id: str, state: str, jobs: dict[str, str] | None = None) -> None:
        """The node's row as the service keeps it: its state and the assignments it holds."""
        held = {job: {"assignmentId": a, "slots": 1} for job, a in (jobs or {}).items()}
        first = next(iter(held.items()), None)
        storage.table(self.conn, storage.T_SCHED).upsert_entity({
            "PartitionKey": cluster_key, "RowKey": sched_store.node_row(node_id), "nodeId": node_id, "state": state,
            "jobs": json.dumps(held) if held else "", "jobKey": first[0] if first else "",
            "assignmentId": first[1]["assignmentId"] if first else "", "stateSince": datetime.now(UTC).isoformat()})

    def held(self, cluster_key: str, node_id: str) -> dict[str, str]:
        try:
            row = storage.table(self.conn, storage.T_SCHED).get_entity(cluster_key, sched_store.node_row(node_id))
        except Exception:  # noqa: BLE001 - no row yet
            return {}
        return {k: v["assignmentId"] for k, v in json.loads(row.get("jobs") or "{}").items()}

    def hold(self, cluster_key: str, node_id: str, task: AssignedTask) -> Assignment:
        """The rows a scheduling pass and its dispatch leave for `task` (its job document, the asg row,
        the node row holding it; the cluster document when the task names a cluster view), and the
        `assign` message the service sends the node."""
        ref = JobRef.from_key(task.job_key)
        _put(ResourceStore(self.conn, storage.T_JOBS), ref.experiment.job_pk, ref.name.lower(), {
            "id": task.job_arm_id, "name": ref.name, "properties": task.job,
            "internal": {"phase": "running", "assignmentId": task.assignment_id, "clusterKey": cluster_key,
                         "attempt": task.attempt}})
        storage.table(self.conn, storage.T_SCHED).upsert_entity({
            "PartitionKey": cluster_key, "RowKey": sched_store.assignment_row(task.job_key), "jobKey": task.job_key,
            "assignmentId": task.assignment_id, "nodes": json.dumps([n.__dict__ for n in task.nodes]),
            "attempt": task.attempt, "slots": 1, "tasks": "{}", "dispatched": True,
            "createdAt": datetime.now(UTC).isoformat(),
            **({} if task.gpus is None else {"gpus": json.dumps({node_id: task.gpus})})})
        self.node_row(cluster_key, node_id, "running", {**self.held(cluster_key, node_id),
                                                        task.job_key: task.assignment_id})
        if task.cluster:
            self.put_cluster(cluster_key, task.cluster)
        return Assignment(task.assignment_id, task.job_key, task.attempt, task.task_index)


def _put(store: ResourceStore, pk: str, rk: str, data: dict[str, Any]) -> None:
    existing = store.get(pk, rk)
    if existing is None:
        store.insert(pk, rk, data)
    else:
        store.replace(existing, data)


_shared: dict[str, Any] = {"users": 0}


def acquire(api_endpoint: dict[str, str], storage_conn: str, issuer_server: IssuerServer,
            directory: Path) -> CredentialsService:
    """The session's node service (started by the first caller, environment set for the API). The API
    already trusts the session's issuer (tests/conftest.py); the service's own identity signs with its key."""
    if _shared["users"] == 0:
        tls = ensure_tls(Path(api_endpoint["ca_file"]).parent)  # the API's: machines trust its CA
        issuer = issuer_server.issuer
        issuer_dir = Path(issuer_server.tls.ca_file).parent.parent / "issuer"  # tests.identity.helpers' layout
        assert (issuer_dir / KEY_FILE).exists(), issuer_dir
        vault = KeyVault(directory / "keyvault", tls, issuer.url, str(issuer_server.tls.ca_file)).start()
        message_key = message_signing.new_key()
        values = {
            "BATCHAI_AZURE_SUBSCRIPTION_ID": COMPUTE_SUB, "BATCHAI_COMPUTE_RESOURCE_GROUP": COMPUTE_RG,
            "BATCHAI_NODE_TOKEN_AUDIENCE": AUDIENCE, "BATCHAI_MESSAGE_KEY": message_key,
            "BATCHAI_KEY_VAULT_HOSTS": f"*.vault.azure.net,127.0.0.1:{vault.port}",
            "BATCHAI_KEY_VAULT_CA_FILE": str(tls.ca_file), "BATCHAI_LOCAL_ISSUER_DIR": str(issuer_dir),
        }
        _shared.update(before={k: os.environ.get(k) for k in values}, vault=vault,
                       service=CredentialsService(api_endpoint["url"], api_endpoint["ca_file"], storage_conn,
                                                  issuer, message_key, vault))
        os.environ.update(values)
    _shared["users"] += 1
    service: CredentialsService = _shared["service"]
    return service


def release() -> None:
    _shared["users"] -= 1
    if _shared["users"]:
        return
    for k, v in _shared["before"].items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    _shared["vault"].stop()


def secret_name() -> str:
    return f"s{uuid.uuid4().hex[:12]}"
