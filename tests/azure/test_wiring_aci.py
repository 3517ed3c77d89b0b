"""Jobs of a container-instance cluster (BATCHAI_PROVIDER=aci), created through the job service and
run by `aci_jobs.tick` with the real azure-mgmt-containerinstance client against the ARM emulator."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime, timedelta

from shared.adapters import sched_store, storage
from shared.adapters.compute.aci import group_name
from shared.config import Settings
from shared.domain.keys import ClusterRef, JobRef, WorkspaceRef
from shared.emulator.arm import ArmEmulator
from shared.ports.rows import Insert, key_fields
from shared.services import aci_jobs, assignments, clusters, experiments, job_state, jobs, workspaces
from shared.services.cluster_reconcile import reconcile_cluster
from tests.azure.helpers import SUBSCRIPTION, azure_settings

ACCOUNT = {"adminUserName": "demo", "adminUserSshPublicKey": "ssh-ed25519 AAAAC3Nza demo@host"}
T0 = datetime(2026, 2, 1, 8, 0, tzinfo=UTC)


def aci_settings(arm: ArmEmulator, conn: str) -> Settings:
    azure = azure_settings(arm_endpoint=arm.url, arm_ca_file=arm.ca_file, arm_token="fake-arm-token")
    return dataclasses.replace(Settings.from_env(), storage_connection_string=conn, provider="aci", azure=azure)


def world(settings: Settings, vm_size: str) -> tuple[ClusterRef, WorkspaceRef]:
    ws = WorkspaceRef(SUBSCRIPTION, "demo", f"ws{uuid.uuid4().hex[:8]}")
    workspaces.create(settings, ws, {"location": "westeurope"})
    experiments.create(settings, ws.experiment("exp"), {})
    ref = ws.cluster("aci")
    clusters.create(settings, ref, {"properties": {"vmSize": vm_size, "scaleSettings": {"manual": {
        "targetNodeCount": 0}}, "userAccountSettings": ACCOUNT}})
    return ref, ws


def submit(settings: Settings, cluster: ClusterRef, ws: WorkspaceRef, name: str, command: str) -> JobRef:
    ref = ws.experiment("exp").job(name)
    jobs.create(settings, ref, {"properties": {
        "cluster": {"id": cluster.arm_id}, "nodeCount": 1, "stdOutErrPathPrefix": "$AZ_BATCHAI_JOB_MOUNT_ROOT",
        "containerSettings": {"imageSourceRegistry": {"image": "python:3.11-slim"}},
        "customToolkitSettings": {"commandLine": command}}})
    return ref


def internal(settings: Settings, ref: JobRef) -> dict:
    doc = job_state.get(settings, ref)
    assert doc is not None
    return doc.data["internal"]


def stdout(settings: Settings, ref: JobRef) -> str:
    doc = job_state.get(settings, ref)
    assert doc is not None
    segment = doc.data["properties"]["jobOutputDirectoryPathSegment"]
    prefix = storage.output_prefix(ref.experiment.workspace.workspace, "exp", ref.name, segment)
    blob = storage.container(settings.storage_connection_string, storage.C_OUTPUTS).download_blob(
        f"{prefix}/stdouterr/stdout.txt")
    return blob.readall().decode()


def test_a_job_runs_as_one_container_group(arm: ArmEmulator, storage_conn: str) -> None:
    settings = aci_settings(arm, storage_conn)
    cluster, ws = world(settings, "STANDARD_D2S_V3")
    ok = submit(settings, cluster, ws, "ok", "python -c 'print(42)'")
    bad = submit(settings, cluster, ws, "bad", "exit 3")
    ids = iter(["asg-ok", "asg-bad"])
    arm.aci_outcomes[group_name("asg-ok")] = (0, "42\n")
    arm.aci_outcomes[group_name("asg-bad")] = (3, "Traceback: boom\n")

    # The reconciler starts no nodes for an ACI cluster.
    assert reconcile_cluster(settings, cluster.key, T0).provider_target == 0
    assert not arm.requests("PUT", "virtualMachineScaleSets")

    result = aci_jobs.tick(settings, T0, new_id=lambda: next(ids), clusters=[cluster.key])
    assert sorted(result.started) == sorted([ok.key, bad.key])
    puts = arm.requests("PUT", "containerGroups")
    assert sorted(p.path.rsplit("/", 1)[1] for p in puts) == sorted([group_name("asg-ok"), group_name("asg-bad")])
    by_task = {p.body["tags"]["batchai-task"]: p.body for p in puts}
    body = by_task["asg-ok"]
    container = body["properties"]["containers"][0]["properties"]
    assert body["tags"]["batchai-job"] == ok.key and body["properties"]["restartPolicy"] == "Never"
    assert container["image"] == "python:3.11-slim"
    assert container["command"][:2] == ["/bin/sh", "-c"] and "print(42)" in container["command"][2]
    assert container["resources"] == {"requests": {"cpu": 2.0, "memoryInGB": 8.0}}
    assert internal(settings, ok)["phase"] == "assigned" and internal(settings, ok)["assignmentId"] == "asg-ok"
    rows = sched_store.partition(storage_conn, cluster.key)
    assert not [r for r in rows if r["RowKey"].startswith(sched_store.PENDING)]
    assert assignments.get(settings, cluster.key, ok.key).assignment_id == "asg-ok"

    # A repeated tick starts nothing twice; the groups run, then end.
    ended: dict[str, str] = {}
    for step in range(1, 10):
        tick = aci_jobs.tick(settings, T0 + timedelta(seconds=step), new_id=lambda: "unused",
                             clusters=[cluster.key])
        ended.update(tick.ended)
        if len(ended) == 2:
            break
    assert ended == {ok.key: "succeeded", bad.key: "failed"}
    assert len(arm.requests("PUT", "containerGroups")) == 2
    assert internal(settings, ok)["executionInfo"]["exitCode"] == 0
    info = internal(settings, bad)["executionInfo"]
    assert info["exitCode"] == 3 and info["errors"][0]["code"] == "JobFailed"
    assert stdout(settings, ok) == "42\n" and stdout(settings, bad) == "Traceback: boom\n"
    history = [h["to"] for h in internal(settings, ok)["history"]]
    assert history[-3:] == ["assigned", "running", "succeeded"]
    deletes = sorted(r.path.rsplit("/", 1)[1] for r in arm.requests("DELETE", "containerGroups"))
    assert deletes == sorted([group_name("asg-ok"), group_name("asg-bad")])
    assert not [r for r in sched_store.partition(storage_conn, cluster.key)
                if r["RowKey"].startswith(sched_store.ASSIGNMENT)]

    # Redelivered ticks after the end do nothing more.
    again = aci_jobs.tick(settings, T0 + timedelta(seconds=30), clusters=[cluster.key])
    assert again.ended == {} and len(arm.requests("DELETE", "containerGroups")) == 2


def test_an_interrupted_start_is_finished_by_the_next_tick(arm: ArmEmulator, storage_conn: str) -> None:
    settings = aci_settings(arm, storage_conn)
    cluster, ws = world(settings, "STANDARD_D2S_V3")
    ref = submit(settings, cluster, ws, "resumed", "echo resumed")
    # A tick that wrote the asg row and died before moving the job:
    entity = assignments.new_entity(cluster.key, ref.key, "asg-r", [], 1, 1, T0)
    entity["dispatched"] = True
    assignments.sched(settings).write(Insert(*key_fields(entity)))
    result = aci_jobs.tick(settings, T0, new_id=lambda: "asg-other", clusters=[cluster.key])
    assert result.started == [ref.key]
    assert internal(settings, ref)["assignmentId"] == "asg-r"
    puts = arm.requests("PUT", "containerGroups")
    assert len(puts) == 1 and puts[0].body["tags"]["batchai-task"] == "asg-r"


def test_gpu_sizes_are_refused_on_the_job(arm: ArmEmulator, storage_conn: str) -> None:
    settings = aci_settings(arm, storage_conn)
    cluster, ws = world(settings, "STANDARD_NC6")
    ref = submit(settings, cluster, ws, "gpu", "nvidia-smi")
    result = aci_jobs.tick(settings, T0, clusters=[cluster.key])
    assert result.rejected == {ref.key: "GpuNotSupported"} and not arm.requests("PUT")
    state = internal(settings, ref)
    assert state["phase"] == "failed"
    error = state["executionInfo"]["errors"][0]
    assert error["code"] == "GpuNotSupported" and "retired" in error["message"]
    rendered = jobs.get(settings, ref).body
    assert rendered["properties"]["executionState"] == "failed"
    assert json.dumps(rendered).count("GpuNotSupported") >= 1
    assert aci_jobs.tick(settings, T0 + timedelta(seconds=1), clusters=[cluster.key]).rejected == {}
