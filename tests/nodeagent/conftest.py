"""Node API fixtures: the service as nodes meet it (tests/nodeagent/service.py: the API in-process over
https trusting a real token issuer, signing node messages, with the local Key Vault), and tokens as
machines' identities get them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.adapters import sched_store, storage
from shared.adapters.compute import vmss
from shared.adapters.resource_store import ResourceStore
from shared.emulator.issuer import Issuer, IssuerServer
from tests.agent.conftest import Events
from tests.nodeagent import service
from tests.nodeagent.service import AUDIENCE, COMPUTE_RG, COMPUTE_SUB, CredentialsService

SUB, RG, WS, EXP = "00000000-0000-0000-0000-000000000000", "demo", "ws", "exp"
__all__ = ["AUDIENCE", "COMPUTE_RG", "COMPUTE_SUB", "CredentialsService"]


@pytest.fixture(scope="session")
def node_api(api_endpoint: dict[str, str], storage_conn: str, issuer_server: IssuerServer,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[CredentialsService]:
    """The API trusting the node issuer, with the compute subscription and group set."""
    yield service.acquire(api_endpoint, storage_conn, issuer_server, tmp_path_factory.mktemp("node-service"))
    service.release()


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
