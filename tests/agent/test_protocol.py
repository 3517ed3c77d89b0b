"""The node protocol with real agent processes: messages by reference (a command line no queue
message could hold runs), only messages the service signed for the node and assignments it holds
are acted on, no secret travels through a queue, Key Vault references resolve for a process node."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from shared.adapters import local_paths, service_identity, storage
from shared.adapters.message_signing import MessageSigner, new_key
from shared.config import AZURITE_ACCOUNT
from shared.domain.messages import Assignment
from tests.agent.conftest import (
    AgentProc,
    Events,
    assignment,
    blob_text,
    job_props,
    new_cluster_key,
    new_node_id,
    wait_until,
)
from tests.nodeagent.service import CredentialsService, secret_name


def stdout_of(agent: AgentProc, a: Any) -> str:
    return blob_text(agent.conn, f"{a.output_prefix}/stdouterr/stdout.txt") or ""


def test_a_job_with_a_200_kib_command_line_runs(start_agent: Callable[..., AgentProc], events: Events) -> None:
    agent = start_agent()
    a = assignment(agent, job_props(": " + "x" * (200 * 1024) + "\necho big-ok"))
    agent.send(a)
    exited = events.wait(agent.node_id, "task-exited", a.assignment_id, timeout=60)
    assert exited.get("exit_code") == 0 and "error" not in exited, (exited, agent.log_text()[-2000:])
    assert stdout_of(agent, a) == "big-ok\n"


def test_forged_assignments_never_run(start_agent: Callable[..., AgentProc], events: Events,
                                      node_api: CredentialsService, tmp_path: Path) -> None:
    agent = start_agent()
    markers = tmp_path / "ran"
    markers.mkdir()

    def held(name: str) -> Assignment:
        """An assignment the node holds whose task leaves a marker when it runs."""
        return node_api.hold(agent.cluster_key, agent.node_id, assignment(agent, job_props(f"touch {markers}/{name}")))

    unsigned, tampered, elsewhere, stranger = held("unsigned"), held("tampered"), held("elsewhere"), held("stranger")
    agent.send_raw(unsigned.to_json())
    redirected = json.loads(node_api.signed(held("signed"), agent.node_id))
    redirected["assignment_id"] = tampered.assignment_id  # a signed message pointed at another assignment
    agent.send_raw(json.dumps(redirected))
    agent.send_raw(node_api.signed(elsewhere, "another-node"))
    agent.send_raw(MessageSigner(new_key()).sign(stranger.to_json(), agent.node_id))
    not_held = Assignment(uuid.uuid4().hex, unsigned.job_key.replace("|job", "|other"), 1, 0)
    agent.send(not_held)  # signed by the service, but no such assignment is this node's
    legit = assignment(agent, job_props("echo legit"))
    agent.send(legit)

    poison = storage.queue(agent.conn, f"{storage.node_queue_name(agent.node_id)}-poison")

    def rejected() -> list[dict[str, Any]]:
        try:
            return [json.loads(m.content) for m in poison.peek_messages(max_messages=32)]
        except ResourceNotFoundError:  # nothing rejected yet
            return []
    wait_until(lambda: len(rejected()) >= 4, 60, what="four rejected messages in the poison queue")
    reasons = sorted(r["reason"] for r in rejected())
    assert len(reasons) == 4
    for phrase in ("unsigned", "bad signature", "signed for another node", "signed with an unknown key"):
        assert sum(phrase in r for r in reasons) == 1, reasons
    assert events.wait(agent.node_id, "task-exited", legit.assignment_id)["exit_code"] == 0
    wait_until(lambda: f"assignment {not_held.assignment_id} refused by the service" in agent.log_text(), 30,
               what="the stale assignment refused")
    assert list(markers.iterdir()) == []
    for message in (unsigned, tampered, elsewhere, stranger, not_held):
        assert events.of(agent.node_id, assignment_id=message.assignment_id) == []
    wait_until(agent.queue_empty, 30, what="every message handled")


def _every_queue_message(conn: str) -> list[str]:
    texts = []
    for queue in storage.queue_service(conn).list_queues(name_starts_with=storage.NODE_QUEUE_PREFIX):
        texts += [str(m.content) for m in storage.queue(conn, queue.name).peek_messages(max_messages=32)]
    return texts


def test_no_secret_travels_through_a_queue(start_agent: Callable[..., AgentProc], events: Events,
                                           node_api: CredentialsService, tmp_path: Path) -> None:
    node_id, cluster_key = new_node_id(), new_cluster_key()
    secrets = {"job": f"job-{uuid.uuid4().hex}", "setup": f"setup-{uuid.uuid4().hex}",
               "key": f"key-{uuid.uuid4().hex}", "job-key": f"jobkey-{uuid.uuid4().hex}"}
    share = {"accountName": AZURITE_ACCOUNT, "azureFileUrl": f"https://{AZURITE_ACCOUNT}.file.core.windows.net/s",
             "relativeMountPath": "afs"}
    go = local_paths.fileshare_dir(tmp_path / "state", AZURITE_ACCOUNT, share["azureFileUrl"]) / "go"  # the job sees it
    setup_task = {"commandLine": "true", "secrets": [{"name": "P", "value": secrets["setup"]}]}
    volumes = {"azureFileShares": [{**share, "credentials": {"accountKey": secrets["key"]}}]}
    cluster = {"nodeSetup": {"setupTask": setup_task, "mountVolumes": volumes}}
    job = job_props('echo "secret=$S"; while [ ! -e "$AZ_BATCHAI_JOB_MOUNT_ROOT/jafs/go" ]; do sleep 0.1; done',
                    secrets=[{"name": "S", "value": secrets["job"]}],
                    mountVolumes={"azureFileShares": [{**share, "relativeMountPath": "jafs",
                                                       "credentials": {"accountKey": secrets["job-key"]}}]})
    a = assignment(node_id, job, cluster=cluster)
    # What the service puts on the node's queue before the node even runs: ids, signed.
    node_api.send(node_id, node_api.setup(cluster_key, node_id, cluster))
    node_api.send(node_id, node_api.hold(cluster_key, node_id, a))
    queued = [str(m.content) for m in storage.queue(node_api.conn, storage.node_queue_name(node_id)).peek_messages(
        max_messages=32)]
    assert [json.loads(t)["kind"] for t in queued] == ["setup", "assign"] and all(len(t) < 1024 for t in queued)

    agent = start_agent(node_id=node_id, cluster_key=cluster_key)
    events.wait(node_id, "task-started", a.assignment_id, timeout=60)
    seen = _every_queue_message(agent.conn) + [json.dumps(e) for e in events.seen]
    go.touch()
    exited = events.wait(node_id, "task-exited", a.assignment_id)
    assert exited["exit_code"] == 0, exited
    assert f"secret={secrets['job']}" in stdout_of(agent, a)  # it reached the task, through the node API
    seen += _every_queue_message(agent.conn) + [json.dumps(e) for e in events.seen]
    leaked = [name for name, value in secrets.items() if any(value in text for text in seen)]
    assert seen and leaked == []


def test_key_vault_references_resolve_for_a_process_node(start_agent: Callable[..., AgentProc], events: Events,
                                                         node_api: CredentialsService) -> None:
    present, registry, missing = secret_name(), secret_name(), secret_name()
    value = f"vault-{uuid.uuid4().hex}"
    node_api.vault.set_secret(present, value)
    node_api.vault.set_secret(registry, "registry-password")

    def ref(name: str) -> dict[str, Any]:
        return {"sourceVault": {"id": "/subscriptions/s/resourceGroups/r/providers/Microsoft.KeyVault/vaults/v"},
                "secretUrl": node_api.vault.secret_url(name)}
    agent = start_agent()
    found = assignment(agent, job_props('echo "kv=$FROM_KV"', secrets=[{"name": "FROM_KV",
                                                                         "valueSecretReference": ref(present)}]))
    lost = assignment(agent, job_props("echo never", secrets=[{"name": "X", "valueSecretReference": ref(missing)}]))
    pulled = assignment(agent, job_props("echo pulled", containerSettings={"imageSourceRegistry": {
        "image": "batchai-test/private:1", "serverUrl": "127.0.0.1:9",
        "credentials": {"username": "u", "passwordSecretReference": ref(registry)}}}))
    for a in (found, lost, pulled):
        agent.send(a)

    exited = events.wait(agent.node_id, "task-exited", found.assignment_id)
    assert exited.get("exit_code") == 0, exited
    assert f"kv={value}" in stdout_of(agent, found)
    error = events.wait(agent.node_id, "task-exited", lost.assignment_id)["error"]
    assert error["code"] == "SecretUnavailable" and node_api.vault.secret_url(missing) in error["message"]
    assert events.of(agent.node_id, "task-started", lost.assignment_id) == []
    # The registry password came from the vault: the pull itself fails (no registry), not the credentials.
    pull_error = events.wait(agent.node_id, "task-exited", pulled.assignment_id, timeout=60)["error"]
    assert pull_error["code"] in ("ImagePullFailed", "ContainerEngineUnavailable"), pull_error
    service = service_identity.local_principal(node_api.issuer.url)
    assert {(present, service), (registry, service)} <= {(r.name, r.principal) for r in node_api.vault.reads}
    assert value not in agent.log_text()
