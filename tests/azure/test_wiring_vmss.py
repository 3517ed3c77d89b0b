"""The cluster reconciler driving the VM scale set provider (real SDK clients) against the ARM emulator:
queued jobs create a Spot scale set, more demand patches its capacity, idle nodes are deleted by
instance id, busy nodes are protected from scale-in, throttling is retried."""

from __future__ import annotations

import base64
import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared.adapters import sched_store
from shared.adapters.compute import provider_for
from shared.adapters.compute.vmss import VmssProvider, instance_id_of, node_id_of, scale_set_name
from shared.config import Settings
from shared.decisions import node_plan
from shared.domain.keys import ClusterRef, WorkspaceRef
from shared.domain.messages import NodeEvent
from shared.emulator.arm import ArmEmulator
from shared.services import node_state, nodes
from shared.services.cluster_reconcile import reconcile_cluster
from tests.azure.helpers import SUBSCRIPTION, azure_settings, wait_until
from tests.nodes.helpers import put_cluster

AUTOSCALE = {"autoScale": {"minimumNodeCount": 0, "maximumNodeCount": 4, "initialNodeCount": 0}}
ACCOUNT = {"adminUserName": "demo", "adminUserSshPublicKey": "ssh-ed25519 AAAAC3Nza demo@host"}


def vmss_settings(arm: ArmEmulator, conn: str) -> Settings:
    azure = azure_settings(arm_endpoint=arm.url, arm_ca_file=arm.ca_file, arm_token="fake-arm-token")
    return dataclasses.replace(Settings.from_env(), storage_connection_string=conn, provider="vmss",
                               idle_timeout_s=300.0, azure=azure)


def gpu_cluster(conn: str) -> ClusterRef:
    ref = WorkspaceRef(SUBSCRIPTION, "demo", "ws").cluster(f"gpu{uuid.uuid4().hex[:8]}")
    put_cluster(conn, ref, AUTOSCALE, vmSize="STANDARD_NC6", vmPriority="lowpriority", userAccountSettings=ACCOUNT)
    return ref


def queue_jobs(conn: str, ref: ClusterRef, n: int, at: datetime) -> list[str]:
    keys = [f"{ref.key}|exp|job{uuid.uuid4().hex[:6]}" for _ in range(n)]
    for key in keys:
        sched_store.add_pending(conn, ref.key, key, "normal", at, 1)
    return keys


def running(settings: Settings, key: str, n: int) -> list[str]:
    instances = provider_for(settings).list_instances(key)
    ok = len(instances) == n and all(i.state == "running" for i in instances)
    return sorted((i.node_id for i in instances), key=instance_id_of) if ok else []


def test_provider_for_builds_clients_from_settings(arm: ArmEmulator, storage_conn: str) -> None:
    settings = vmss_settings(arm, storage_conn)
    provider = provider_for(settings)
    assert isinstance(provider, VmssProvider)
    assert provider.list_instances(f"{SUBSCRIPTION}|demo|ws|none") == []
    get = arm.requests("GET", "virtualMachineScaleSets")[0]
    assert get.status == 404  # reached the emulator over TLS with its CA, with a bearer token
    public = dataclasses.replace(settings, azure=dataclasses.replace(settings.azure,
                                                                     arm_endpoint="https://management.azure.com"))
    with pytest.raises(ValueError, match="BATCHAI_ARM_TOKEN"):
        provider_for(public)


def test_reconciler_scales_a_spot_scale_set_with_demand_and_idleness(arm: ArmEmulator, storage_conn: str) -> None:
    settings = vmss_settings(arm, storage_conn)
    ref = gpu_cluster(storage_conn)
    key, name = ref.key, scale_set_name(ref.key)
    t0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    first = queue_jobs(storage_conn, ref, 2, t0)

    arm.throttle(1)  # the first ARM call of the tick is throttled: azure-core retries it
    result = reconcile_cluster(settings, key, t0)
    assert result.wanted == 2 and result.provider_target == 2
    gets = arm.requests("GET", f"virtualMachineScaleSets/{name}")
    assert [g.status for g in gets[:2]] == [429, 404]
    puts = arm.requests("PUT", "virtualMachineScaleSets")
    assert len(puts) == 1 and puts[0].path.endswith(f"/resourceGroups/batchai-compute/providers/"
                                                    f"Microsoft.Compute/virtualMachineScaleSets/{name}")
    body = puts[0].body
    azure = settings.azure
    assert body["sku"] == {"name": "STANDARD_NC6", "tier": "Standard", "capacity": 2}
    assert body["identity"] == {"type": "SystemAssigned, UserAssigned",
                                "userAssignedIdentities": {azure.identity_resource_id: {}}}
    assert body["tags"]["batchai-cluster"] == key
    vm = body["properties"]["virtualMachineProfile"]
    assert vm["priority"] == "Spot" and vm["evictionPolicy"] == "Delete"
    user_data = base64.b64decode(vm["osProfile"]["customData"]).decode()
    assert key in user_data and azure.identity_client_id in user_data and "nvidia-container-toolkit" in user_data

    reconcile_cluster(settings, key, t0 + timedelta(seconds=5))  # the create runs: start nothing
    assert len(arm.requests("PUT", "virtualMachineScaleSets")) == 1 and not arm.requests("PATCH")
    wait_until(lambda: running(settings, key, 2), what="two instances running")

    more = queue_jobs(storage_conn, ref, 2, t0 + timedelta(seconds=10))
    result = reconcile_cluster(settings, key, t0 + timedelta(seconds=10))
    assert result.provider_target == 4
    assert [p.body for p in arm.requests("PATCH", "virtualMachineScaleSets")] == [{"sku": {"capacity": 4}}]
    node_ids = wait_until(lambda: running(settings, key, 4), what="four instances running")
    assert node_ids == [node_id_of(key, str(i)) for i in range(4)]

    # The agents register and get ready; one node takes a job, the queue drains.
    ready_at = t0 + timedelta(seconds=60)
    for node_id in node_ids:
        for kind in (node_plan.REGISTERED, node_plan.READY):
            nodes.handle_node_event(settings, NodeEvent(kind, key, node_id, ready_at.isoformat(),
                                                        inventory={"cores": 6, "gpus": 1}), ready_at)
    assert {nodes.get_node(settings, key, n)["state"] for n in node_ids} == {"idle"}
    busy = node_ids[1]
    node_state.mutate(settings, key, busy, lambda row: node_state.moved(row, "running", "assigned", ready_at,
                                                                   jobKey=first[0], assignmentId="a1"))
    for row in sched_store.partition(storage_conn, key):
        if row["RowKey"].startswith(sched_store.PENDING):
            sched_store.storage.table(storage_conn, sched_store.storage.T_SCHED).delete_entity(key, row["RowKey"])
    assert more  # they ran and ended elsewhere in this story

    # Past the idle timeout: exactly the idle nodes go, by instance id; the busy node is protected.
    arm.clear_log()
    late = ready_at + timedelta(seconds=settings.idle_timeout_s + 1)
    result = reconcile_cluster(settings, key, late)
    idle = [n for n in node_ids if n != busy]
    assert result.removed == sorted(idle) and result.provider_target == 1
    posts = arm.requests("POST")
    assert len(posts) == 1 and posts[0].path.endswith(f"/virtualMachineScaleSets/{name}/delete")
    assert posts[0].body == {"instanceIds": ["0", "2", "3"]}
    assert result.protected == {busy: True}
    protect = arm.requests("PUT", f"/virtualMachines/{instance_id_of(busy)}")
    assert len(protect) == 1 and protect[0].body["properties"]["protectionPolicy"]["protectFromScaleIn"] is True
    assert {nodes.get_node(settings, key, n)["state"] for n in idle} == {"leaving"}

    # Later ticks: nothing deleted twice, no protection call repeated; the rows of gone nodes drop.
    wait_until(lambda: running(settings, key, 1) == [busy], what="idle instances deleted")
    result = reconcile_cluster(settings, key, late + timedelta(seconds=5))
    assert len(arm.requests("POST")) == 1 and len(arm.requests("PUT", "/virtualMachines/")) == 1
    assert sorted(result.dropped) == sorted(idle) and result.protected == {}
    assert [nodes.node_id_of(r) for r in nodes.node_rows(sched_store.partition(storage_conn, key))] == [busy]

    # The job ends: the node is idle again and its protection is released once.
    node_state.mutate(settings, key, busy, lambda row: node_state.moved(row, "idle", "task ended", late,
                                                                   jobKey="", assignmentId="",
                                                                   idleSince=late.isoformat()))
    result = reconcile_cluster(settings, key, late + timedelta(seconds=10))
    assert result.protected == {busy: False}
    release = arm.requests("PUT", f"/virtualMachines/{instance_id_of(busy)}")
    assert len(release) == 2 and release[1].body["properties"]["protectionPolicy"]["protectFromScaleIn"] is False
