"""The local provider's nodes: each agent process gets its own node token (a 0600 file, only its hash
kept by the service, revoked with the instance), the service's URL, CA and public message key, none of
the service's keys, and a signed Leave."""

from __future__ import annotations

import hashlib
import json
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.adapters import node_tokens, storage
from shared.adapters.compute.local import NODE_TOKEN, LocalProvider, NodeService, stop_all
from shared.adapters.compute.port import ClusterSpec
from shared.adapters.message_signing import MessageVerifier
from shared.domain.messages import Leave, node_message
from tests.nodeagent.conftest import new_cluster
from tests.nodeagent.service import CredentialsService
from tests.polling import wait_until

# Stands in for the agent: records its environment and its token file's mode, lives until SIGTERM.
STAND_IN = """
import json, os, pathlib, signal, sys
workdir = pathlib.Path(sys.argv[1])
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
seen = {"env": dict(os.environ), "mode": os.stat(workdir / "node-token").st_mode & 0o777}
(workdir / "seen.tmp").write_text(json.dumps(seen))
(workdir / "seen.tmp").replace(workdir / "seen.json")
signal.pause()
"""


def stand_in(cluster_key: str, node_id: str, workdir: Path) -> list[str]:
    return [sys.executable, "-c", STAND_IN, str(workdir)]


@pytest.fixture
def provider(node_api: CredentialsService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalProvider]:
    # What the trigger host holds besides: none of it may reach a node.
    for name in ("BATCHAI_SECRETS_KEY", "BATCHAI_API_TOKEN_SHA256", "AzureWebJobsStorage"):
        monkeypatch.setenv(name, "the-service's-own")
    p = LocalProvider(tmp_path / "state", node_api.conn, command=stand_in, leave_wait_s=0.5, grace_s=2.0,
                      service=NodeService(node_api.url, node_api.ca_file, node_api.message_key))
    yield p
    stop_all(p.state_dir, grace_s=2.0)


def test_a_local_node_gets_its_own_token_and_no_service_key(provider: LocalProvider,
                                                            node_api: CredentialsService) -> None:
    key = new_cluster()
    spec = ClusterSpec(cluster_key=key, arm_id="/x", vm_size="STANDARD_D1_V2", vm_priority="dedicated")
    provider.reconcile(spec, 2)
    first, second = sorted(i.node_id for i in provider.list_instances(key))
    workdir = provider.state_dir / "nodes" / first
    seen = json.loads(wait_until(lambda: (workdir / "seen.json").exists() and (workdir / "seen.json").read_text(),
                                 30, what="the node's record of its start"))
    token = (workdir / NODE_TOKEN).read_text()
    assert seen["mode"] == stat.S_IRUSR | stat.S_IWUSR
    row = storage.table(node_api.conn, storage.T_NODE_TOKENS).get_entity(key, first)
    assert row["sha256"] == hashlib.sha256(token.encode()).hexdigest() and token not in json.dumps(dict(row))
    assert token != (provider.state_dir / "nodes" / second / NODE_TOKEN).read_text()
    env = seen["env"]
    assert (env["BATCHAI_NODE_SERVICE_URL"], env["BATCHAI_NODE_CA_FILE"]) == (node_api.url, node_api.ca_file)
    assert env["BATCHAI_MESSAGE_PUBLIC_KEY"] == node_api.public_key
    assert env["BATCHAI_STORAGE_CONNECTION_STRING"] == node_api.conn  # the laptop topology's storage
    for name in ("BATCHAI_MESSAGE_KEY", "BATCHAI_SECRETS_KEY", "BATCHAI_API_TOKEN_SHA256", "BATCHAI_LOCAL_ISSUER_DIR",
                 "AzureWebJobsStorage"):
        assert name not in env, name
    assert token not in json.dumps(env)

    # The token proves this node to the node API (and no other node).
    node_api.node_row(key, first, "preparing")
    node_api.put_cluster(key, {"vmSize": "STANDARD_D1_V2"})
    assert node_api.post("/nodeagent/setup", {"clusterKey": key, "nodeId": first}, token).status_code == 200
    assert node_api.post("/nodeagent/setup", {"clusterKey": key, "nodeId": second}, token).status_code == 403

    # Removed: a Leave signed for it, then the token is revoked with the instance.
    provider.reconcile(spec, 1, remove=[first])
    (leave,) = storage.queue(node_api.conn, storage.node_queue_name(first)).peek_messages(max_messages=5)
    assert node_message(MessageVerifier(node_api.public_key).verify(str(leave.content), first)) == Leave(
        "node removed from the cluster")
    wait_until(lambda: first not in {i.node_id for i in provider.list_instances(key)}, 30, what="the node gone")
    assert not node_tokens.matches(node_api.conn, key, first, token)
    assert node_api.post("/nodeagent/setup", {"clusterKey": key, "nodeId": first}, token).status_code == 403
