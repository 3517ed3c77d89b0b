"""POST /nodeagent/assignment and /nodeagent/setup over https: a node gets the documents its messages
name only while it holds them, with secrets opened and, for a node without an identity of its own,
Key Vault references resolved by the service; machines get the references to read themselves."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from shared.adapters import sched_store, service_identity, storage
from shared.adapters.resource_store import ResourceStore
from shared.domain.keys import JobRef
from shared.domain.messages import AssignedTask, NodeAddress
from shared.domain.secret_refs import RESOLUTION_ERROR
from tests.nodeagent.conftest import EXP, RG, SUB, WS, new_cluster, node_of, node_token
from tests.nodeagent.service import CredentialsService, secret_name

BIG = 256 * 1024  # the largest request body the API accepts: a commandLine of about that size


def task_for(node_ids: list[str], job: dict[str, Any], cluster: dict[str, Any] | None = None,
             task_index: int = 0) -> AssignedTask:
    name = f"j{uuid.uuid4().hex[:8]}"
    segment = uuid.uuid4().hex
    return AssignedTask(
        assignment_id=uuid.uuid4().hex, job_key=f"{SUB}|{RG}|{WS}|{EXP}|{name}",
        job_arm_id=f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.BatchAI/workspaces/{WS}"
                   f"/experiments/{EXP}/jobs/{name}",
        attempt=1, task_index=task_index, nodes=[NodeAddress(n, "127.0.0.1") for n in node_ids],
        job={"nodeCount": len(node_ids), "jobOutputDirectoryPathSegment": segment, **job},
        cluster=cluster or {}, output_container=storage.C_OUTPUTS,
        output_prefix=storage.output_prefix(WS, EXP, name, segment))


def ask(node_api: CredentialsService, token: str | None, cluster_key: str, node_id: str, task: AssignedTask,
        **override: Any) -> httpx.Response:
    body = {"clusterKey": cluster_key, "nodeId": node_id, "assignmentId": task.assignment_id,
            "jobKey": task.job_key, "taskIndex": task.task_index, "attempt": task.attempt, **override}
    return node_api.post("/nodeagent/assignment", body, token)


def test_a_node_fetches_the_task_it_holds_whole_and_with_secrets(node_api: CredentialsService) -> None:
    key, node = new_cluster(), "p1"
    token = node_api.mint_node_token(key, node)
    command = "echo " + "x" * BIG  # far beyond what a queue message holds
    job = {"customToolkitSettings": {"commandLine": command}, "secrets": [{"name": "S", "value": "open-sesame"}],
           "containerSettings": {"imageSourceRegistry": {"image": "i", "credentials": {"username": "u",
                                                                                       "password": "pw-1"}}}}
    cluster = {"vmSize": "STANDARD_D1_V2", "userAccountSettings": {"adminUserName": "a", "adminUserPassword": "adm"},
               "nodeSetup": {"setupTask": {"commandLine": "echo hi"},
                             "performanceCountersSettings": {"appInsightsReference": {"id": "x"}}}}
    task = task_for([node], job, cluster)
    message = node_api.hold(key, node, task)
    assert len(message.to_json()) < 300

    reply = ask(node_api, token, key, node, task)
    assert reply.status_code == 200, reply.text[:500]
    got = AssignedTask.from_dict(reply.json())
    counters = {"appInsightsReference": {"id": "x"}}  # the node sends its counters there
    assert got == AssignedTask(**{**task.__dict__, "cluster": {"nodeSetup": {
        "setupTask": {"commandLine": "echo hi"}, "performanceCountersSettings": counters}}})
    assert "adm" not in reply.text  # only what a node needs of its cluster


def test_a_task_gets_the_gpu_indices_recorded_with_its_assignment(node_api: CredentialsService) -> None:
    key, node = new_cluster(), "pg"
    token = node_api.mint_node_token(key, node)
    task = AssignedTask(**{**task_for([node], {"customToolkitSettings": {"commandLine": "true"}}).__dict__,
                           "gpus": [1, 3]})
    node_api.hold(key, node, task)
    reply = ask(node_api, token, key, node, task)
    assert reply.status_code == 200, reply.text[:500]
    assert AssignedTask.from_dict(reply.json()).gpus == [1, 3]


def test_a_task_the_node_does_not_hold_is_refused(node_api: CredentialsService) -> None:
    key = new_cluster()
    tokens = {n: node_api.mint_node_token(key, n) for n in ("pa", "pb")}
    task_b = task_for(["pb"], {"customToolkitSettings": {"commandLine": "true"}})
    node_api.hold(key, "pb", task_b)
    node_api.node_row(key, "pa", "idle")

    def status(node_id: str, token: str | None, task: AssignedTask = task_b, **override: Any) -> tuple[int, str]:
        reply = ask(node_api, token, key, node_id, task, **override)
        return reply.status_code, reply.json().get("error", {}).get("code", "")

    assert status("pb", tokens["pb"])[0] == 200
    assert status("pb", tokens["pa"]) == (403, "AuthorizationFailed")  # A's token does not prove node B
    assert status("pa", tokens["pa"]) == (403, "AuthorizationFailed")  # B's task, asked by A as itself
    assert status("pa", tokens["pa"], taskIndex=1)[0] == 403
    assert status("pb", tokens["pb"], attempt=2) == (409, "AssignmentSuperseded")
    assert status("pb", tokens["pb"], assignmentId=uuid.uuid4().hex) == (409, "AssignmentSuperseded")
    assert status("pb", tokens["pb"], jobKey=f"{SUB}|{RG}|{WS}|{EXP}|gone") == (404, "AssignmentNotFound")
    assert status("pb", "bainode1.forged")[0] == 403
    assert status("pb", None)[0] == 401
    assert ask(node_api, tokens["pb"], key, "pb", task_b, attempt="1").status_code == 400

    # The job moved on (requeued): the node's copy of the assignment is stale.
    ref = JobRef.from_key(task_b.job_key)
    ResourceStore(node_api.conn, storage.T_JOBS).update(ref.experiment.job_pk, ref.name.lower(),
                                                         lambda d: d["internal"].update(
                                                             phase="queued", submittedAt=datetime.now(UTC).isoformat()))
    assert status("pb", tokens["pb"]) == (409, "AssignmentSuperseded")
    # Released (asg row gone): nothing to fetch.
    storage.table(node_api.conn, storage.T_SCHED).delete_entity(key, sched_store.assignment_row(task_b.job_key))
    assert status("pb", tokens["pb"]) == (404, "AssignmentNotFound")


def test_setup_is_served_to_a_node_that_joins_the_cluster(node_api: CredentialsService) -> None:
    key, node = new_cluster(), "ps"
    token = node_api.mint_node_token(key, node)
    body = {"clusterKey": key, "nodeId": node}
    assert node_api.post("/nodeagent/setup", body, token).status_code == 404  # not a node of it (yet)
    props = {"vmSize": "STANDARD_D1_V2", "userAccountSettings": {"adminUserName": "a", "adminUserPassword": "adm"},
             "nodeSetup": {"setupTask": {"commandLine": "echo hi", "secrets": [{"name": "T", "value": "tv"}]},
                           "mountVolumes": {"azureFileShares": [{"accountName": "a", "azureFileUrl": "https://a/s",
                                                                 "relativeMountPath": "afs",
                                                                 "credentials": {"accountKey": "k1"}}]}}}
    message = node_api.setup(key, node, props)
    reply = node_api.post("/nodeagent/setup", body, token)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"version": message.version, "cluster": {"nodeSetup": {
        "setupTask": props["nodeSetup"]["setupTask"], "mountVolumes": props["nodeSetup"]["mountVolumes"]}}}
    node_api.node_row(key, node, "leaving")
    assert node_api.post("/nodeagent/setup", body, token).status_code == 409


def test_key_vault_references_are_resolved_for_a_node_without_an_identity(node_api: CredentialsService) -> None:
    key, node = new_cluster(), "pk"
    token = node_api.mint_node_token(key, node)
    present, registry, missing = secret_name(), secret_name(), secret_name()
    node_api.vault.set_secret(present, "from-the-vault")
    node_api.vault.set_secret(registry, "registry-pw")

    def ref(name: str) -> dict[str, Any]:
        return {"sourceVault": {"id": "/subscriptions/s/resourceGroups/r/providers/Microsoft.KeyVault/vaults/v"},
                "secretUrl": node_api.vault.secret_url(name)}
    job = {"customToolkitSettings": {"commandLine": "true"},
           "secrets": [{"name": "A", "valueSecretReference": ref(present)},
                       {"name": "B", "valueSecretReference": ref(missing)},
                       {"name": "C", "valueSecretReference": {**ref(present), "secretUrl": "https://evil.example/secrets/x"}}],
           "containerSettings": {"imageSourceRegistry": {"image": "i", "credentials": {
               "username": "u", "passwordSecretReference": ref(registry)}}}}
    task = task_for([node], job)
    node_api.hold(key, node, task)
    reply = ask(node_api, token, key, node, task)
    assert reply.status_code == 200, reply.text
    got = reply.json()["job"]
    assert got["secrets"][0] == {"name": "A", "value": "from-the-vault"}
    assert "SecretNotFound" in got["secrets"][1]["valueSecretReference"][RESOLUTION_ERROR]
    assert "not a secret URL of an allowed vault" in got["secrets"][2]["valueSecretReference"][RESOLUTION_ERROR]
    credentials = got["containerSettings"]["imageSourceRegistry"]["credentials"]
    assert credentials == {"username": "u", "password": "registry-pw"}
    service = service_identity.local_principal(node_api.issuer.url)
    read = {(r.name, r.principal) for r in node_api.vault.reads}
    assert {(present, service), (registry, service)} <= read  # with the service's own identity


def test_a_machine_gets_the_references_to_read_itself(node_api: CredentialsService) -> None:
    key = new_cluster()
    node = node_of(key)
    reference = {"sourceVault": {"id": "v"}, "secretUrl": node_api.vault.secret_url(secret_name())}
    task = task_for([node], {"customToolkitSettings": {"commandLine": "true"},
                             "secrets": [{"name": "A", "valueSecretReference": reference}]})
    node_api.hold(key, node, task)
    reply = ask(node_api, node_token(node_api.issuer, key), key, node, task)
    assert reply.status_code == 200, reply.text
    assert reply.json()["job"]["secrets"] == [{"name": "A", "valueSecretReference": reference}]
    credentials = node_api.post("/nodeagent/credentials", {"clusterKey": key, "nodeId": node},
                                node_token(node_api.issuer, key)).json()
    assert credentials["messageKey"] == node_api.public_key
    assert f"127.0.0.1:{node_api.vault.port}" in credentials["keyVaultHosts"]
