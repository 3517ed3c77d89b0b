"""Node credentials fixtures: the API served in-process over https (tests/conftest.py `api_endpoint`)
trusting a real token issuer (the stack's `IssuerServer`), and tokens as machines' identities get them."""

from __future__ import annotations

import json
import os
import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from shared.adapters import sched_store, storage
from shared.adapters.compute import vmss
from shared.adapters.resource_store import ResourceStore
from shared.emulator.issuer import Issuer, IssuerServer
from tests.agent.conftest import Events

SUB, RG, WS, EXP = "00000000-0000-0000-0000-000000000000", "demo", "ws", "exp"
COMPUTE_SUB, COMPUTE_RG = "00000000-0000-0000-0000-0000000000c1", "batchai-compute"
AUDIENCE = "api://batchai-nodes"
NODE_ENV = {"BATCHAI_TOKEN_ISSUER": None, "BATCHAI_TOKEN_ISSUER_CA_FILE": None,
            "BATCHAI_AZURE_SUBSCRIPTION_ID": COMPUTE_SUB, "BATCHAI_COMPUTE_RESOURCE_GROUP": COMPUTE_RG,
            "BATCHAI_NODE_TOKEN_AUDIENCE": AUDIENCE}


@dataclass
class CredentialsService:
    url: str
    ca_file: str
    conn: str
    issuer: Issuer

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=ssl.create_default_context(cafile=self.ca_file), timeout=30)

    def post(self, path: str, body: Any, token: str | None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        with self.client() as client:
            return client.post(path, content=json.dumps(body), headers=headers)


@pytest.fixture(scope="session")
def node_api(api_endpoint: dict[str, str], storage_conn: str,
             issuer_server: IssuerServer) -> Iterator[CredentialsService]:
    """The API trusting `issuer_server` for node tokens, with the compute subscription and group set."""
    values = {**NODE_ENV, "BATCHAI_TOKEN_ISSUER": issuer_server.issuer.url,
              "BATCHAI_TOKEN_ISSUER_CA_FILE": str(issuer_server.tls.ca_file)}
    before = {k: os.environ.get(k) for k in values}
    os.environ.update({k: str(v) for k, v in values.items()})
    yield CredentialsService(api_endpoint["url"], api_endpoint["ca_file"], storage_conn, issuer_server.issuer)
    for k, v in before.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def events(storage_conn: str) -> Events:
    return Events(storage_conn)


def new_cluster() -> str:
    return f"{SUB}|{RG}|{WS}|c{uuid.uuid4().hex[:8]}"


def node_of(cluster_key: str, n: int = 1) -> str:
    """A node id as the scale set names its machines: the computer name prefix, then 6 base-36 digits."""
    return f"{vmss.computer_name_prefix(cluster_key)}{n:06d}"


def scale_set_identity(cluster_key: str) -> str:
    return (f"/subscriptions/{COMPUTE_SUB}/resourcegroups/{COMPUTE_RG}/providers/Microsoft.Compute/"
            f"virtualMachineScaleSets/{vmss.scale_set_name(cluster_key)}")


def node_token(issuer: Issuer, cluster_key: str, **claims: Any) -> str:
    """What IMDS gives the scale set's system identity for the node audience."""
    principal = str(uuid.uuid5(uuid.NAMESPACE_URL, cluster_key))
    return issuer.sign({"aud": AUDIENCE, "sub": principal, "oid": principal, "appid": str(uuid.uuid4()),
                        "xms_mirid": scale_set_identity(cluster_key), **claims})


def hold_assignment(conn: str, cluster_key: str, node_id: str, job: str, segment: str) -> str:
    """The rows the scheduler leaves when it gives `node_id` a task of job `job`: the job document and
    the node row holding the assignment. Returns the assignment id."""
    assignment_id = uuid.uuid4().hex
    ref_key = f"{SUB}|{RG}|{WS}|{EXP}|{job}".lower()
    ResourceStore(conn, storage.T_JOBS).insert(f"{SUB}|{RG}|{WS}|{EXP}".lower(), job.lower(), {
        "id": f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.BatchAI/workspaces/{WS}/experiments/{EXP}"
              f"/jobs/{job}", "name": job,
        "properties": {"jobOutputDirectoryPathSegment": segment, "nodeCount": 1},
        "internal": {"phase": "running", "assignmentId": assignment_id, "clusterKey": cluster_key}})
    storage.table(conn, storage.T_SCHED).upsert_entity({
        "PartitionKey": cluster_key, "RowKey": sched_store.node_row(node_id), "state": "running",
        "jobKey": ref_key, "assignmentId": assignment_id, "stateSince": datetime.now(UTC).isoformat()})
    return assignment_id


def outputs_prefix(job: str, segment: str) -> str:
    return storage.output_prefix(WS, EXP, job, segment)
