"""What only the machine topology can show: machines hold no key of the service's storage account
(not in their custom data, environment, files or the messages they receive), their own credentials
cannot read the service's tables nor another node's queue, and a VM size the cloud refuses shows as
the cluster's error instead of a cluster sitting at 0 nodes."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest
from azure.mgmt.batchai import models
from azure.storage.queue import QueueServiceClient

from shared.adapters import storage
from shared.localstack import cloud_topology
from tests.e2e.conftest import EXP, MACHINES, WS, Stack, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("stack", [MACHINES], indirect=True)]

# Run inside a machine: every file outside the emulator's shares, and every process's environment,
# searched for the given byte strings; prints the matches as JSON.
SEARCH = r"""
import json, os, sys
needles = [bytes.fromhex(h) for h in json.loads(sys.argv[1])]
skip = ("/proc", "/sys", "/dev", "/run", "/mnt/emulator")
found = []
def scan(path, data):
    for i, n in enumerate(needles):
        if n in data:
            found.append([path, i])
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        scan(f"/proc/{pid}/environ", open(f"/proc/{pid}/environ", "rb").read())
    except OSError:
        pass
for root, dirs, files in os.walk("/"):
    dirs[:] = [d for d in dirs if os.path.join(root, d) not in skip]
    for name in files:
        path = os.path.join(root, name)
        try:
            if os.path.islink(path) or os.path.getsize(path) > 256 << 20:
                continue
            with open(path, "rb") as f:
                scan(path, f.read())
        except OSError:
            pass
print(json.dumps(found))
"""

# Run inside a machine with the agent's Python: the node's own credentials, used against what they
# must not reach. Prints one line per attempt: the HTTP status it got.
PROBE = r"""
import json, sys, urllib.parse, httpx
from azure.core.credentials import AzureSasCredential
from azure.core.exceptions import HttpResponseError
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueClient
config = json.load(open("/etc/batchai/agent.json"))
imds = config["imdsUrl"]
resource = urllib.parse.quote(config["tokenResource"], safe="")
token = httpx.get(f"{imds}/metadata/identity/oauth2/token?api-version=2018-02-01&resource={resource}",
                  headers={"Metadata": "true"}).json()["access_token"]
import socket
creds = httpx.post(f"{config['serviceUrl']}/nodeagent/credentials", headers={"Authorization": f"Bearer {token}"},
                   json={"clusterKey": config["clusterKey"], "nodeId": socket.gethostname()}).json()
own = creds["nodeQueue"]
base, _, sas = own.partition("?")
account_url = base.rsplit("/", 1)[0]
table_url = account_url.replace(":" + account_url.rsplit(":", 1)[1].split("/")[0], ":" + sys.argv[1])
for what, call in (
        ("tables", lambda: list(TableServiceClient(table_url, credential=AzureSasCredential(sas)).list_tables())),
        ("other-queue", lambda: QueueClient.from_queue_url(f"{account_url}/{sys.argv[2]}",
                                                           credential=AzureSasCredential(sas)).peek_messages()),
        ("send-other-queue", lambda: QueueClient.from_queue_url(f"{account_url}/{sys.argv[2]}",
                                                                credential=AzureSasCredential(sas)).send_message("x")),
        ("own-queue", lambda: QueueClient.from_queue_url(own).peek_messages())):
    try:
        call()
        print(what, 200)
    except HttpResponseError as e:
        print(what, e.status_code)
"""


def _names(stack_id: str) -> dict[str, str]:
    out = subprocess.run(["podman", "ps", "--filter", f"label=batchai.stack={stack_id}", "--format",
                          "{{.Names}} {{.State}}"], capture_output=True, text=True, check=True).stdout
    return dict(line.split(" ", 1) for line in out.splitlines() if line.strip())


def service_key(s: Stack) -> str:
    accounts = json.loads((Path(s.endpoint["state_dir"]) / "local" / "accounts.json").read_text())
    return str(accounts[cloud_topology.SERVICE_ACCOUNT])


def test_machines_hold_no_key_of_the_service_account(two_nodes: Stack) -> None:
    s = two_nodes
    key = service_key(s)
    needles = [key.encode(), base64.b64decode(key), quote(key, safe="").encode()]
    assert len({n for n in needles}) == 3
    # While jobs are dispatched, the node queues hold what the machines receive: look at those messages.
    seen: list[str] = []
    queues = QueueServiceClient.from_connection_string(s.service_conn)
    for i in range(3):
        s.submit(WS, EXP, f"keyless{i}", "two", "echo keyless; env | sort",
                 secrets=[models.EnvironmentVariableWithSecretValue(name="MY_SECRET", value="not-the-key")])

    def peek() -> bool:
        for q in queues.list_queues(name_starts_with=storage.NODE_QUEUE_PREFIX):
            seen.extend(str(m.content) for m in queues.get_queue_client(q.name).peek_messages(max_messages=32))
        return all(s.client.jobs.get(s.rg, WS, EXP, f"keyless{i}").execution_state in ("succeeded", "failed")
                   for i in range(3))

    wait_until(peek, 600, interval=0.05, what="the keyless jobs to end")
    for i in range(3):
        assert s.client.jobs.get(s.rg, WS, EXP, f"keyless{i}").execution_state == "succeeded"
    for message in seen:
        decoded = base64.b64decode(message) if _is_b64(message) else message.encode()
        assert not any(n in decoded or n in message.encode() for n in needles), "a node message carries the key"

    names = _names(cloud_topology.stack_id_of(Path(s.endpoint["state_dir"])))
    assert len(names) >= 2
    for name in names:
        seed = Path(s.endpoint["state_dir"]) / "emulator" / "seeds" / name / "user-data"
        custom_data = seed.read_bytes()
        assert custom_data.startswith(b"#cloud-config")
        assert not any(n in custom_data for n in needles), f"{name}'s custom data carries the key"
        found = subprocess.run(["podman", "exec", "-i", name, "python3", "-c", SEARCH,
                                json.dumps([n.hex() for n in needles])],
                               capture_output=True, text=True, check=True, timeout=300)
        assert json.loads(found.stdout) == [], f"{name} holds the key: {found.stdout}"


def test_a_machine_s_credentials_reach_its_own_queue_only(two_nodes: Stack) -> None:
    s = two_nodes
    names = sorted(_names(cloud_topology.stack_id_of(Path(s.endpoint["state_dir"]))))
    nodes = [x.node_id for x in s.client.clusters.list_remote_login_information(s.rg, WS, "two")]
    assert len(nodes) == 2
    table_port = str(s.endpoint["ports"]["table"])
    for name in names[:1]:
        hostname = subprocess.run(["podman", "exec", name, "hostname"], capture_output=True, text=True,
                                  check=True).stdout.strip()
        other = next(n for n in nodes if n != hostname)
        probe = subprocess.run(["podman", "exec", "-i", "-e", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt", name,
                                "/opt/batchai/venv/bin/python", "-c", PROBE,
                                table_port, storage.node_queue_name(other)],
                               capture_output=True, text=True, timeout=120)
        assert probe.returncode == 0, probe.stderr
        results = dict(line.split() for line in probe.stdout.splitlines())
        assert results == {"tables": "403", "other-queue": "403", "send-other-queue": "403", "own-queue": "200"}, \
            probe.stdout


def test_a_vm_size_the_cloud_refuses_shows_as_the_cluster_s_error(stack: Stack) -> None:
    s = stack
    s.workspace("refused")
    s.client.clusters.begin_create(s.rg, "refused", "nosuchsize", models.ClusterCreateParameters(
        vm_size="STANDARD_NO_SUCH_SIZE",
        scale_settings=models.ScaleSettings(manual=models.ManualScaleSettings(target_node_count=1)),
        user_account_settings=models.UserAccountSettings(admin_user_name="demo"))).result()

    def refused() -> models.Cluster | None:
        c = s.client.clusters.get(s.rg, "refused", "nosuchsize")
        return c if c.errors else None

    c = wait_until(refused, 300, what="the refusal on the cluster")
    assert [e.code for e in c.errors] == ["SkuNotAvailable"]
    assert "STANDARD_NO_SUCH_SIZE" in c.errors[0].message.upper()
    assert c.current_node_count == 0 and c.allocation_state == "steady"


def _is_b64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
        return True
    except ValueError:
        return False
