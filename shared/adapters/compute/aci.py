"""The Azure Container Instances provider: every task of a job is one container group (restartPolicy
Never) in the compute resource group; the cluster has no standing nodes.

It implements the port trivially (no instances to drive; `list_instances` reports the groups of
the cluster, `delete_cluster` deletes them) and the `TaskRunner` capability the service uses to
start a task, poll it, read its logs and delete it. Group names are derived from the task id
(`group_name`), so a repeated `run_task` finds its group instead of starting a second one.
CPU and memory come from the cluster's VM size. GPU sizes are refused: ACI GPU containers were
retired on 2025-07-14. Like the vmss provider, nothing here waits for an operation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.containerinstance import models as am

from shared.adapters.azure_clients import AzureClients
from shared.adapters.compute.capabilities import ComputeRejected, ContainerTask, FileShareMount, TaskStatus, text
from shared.adapters.compute.port import ClusterSpec, Instance
from shared.adapters.compute.vm_sizes import is_gpu_size, size_info
from shared.config import AzureComputeSettings

CLUSTER_TAG = "batchai-cluster"
CONTAINER = "task"
MOUNT_ROOT = "/mnt/batch/tasks/shared/LS_root/mounts"
JOB_MOUNT_ROOT = "/mnt/batch/tasks/shared/LS_root/jobs/mounts"
DEFAULT_IMAGE = "ubuntu:22.04"


def group_name(task_id: str) -> str:
    return "bai-task-" + hashlib.sha256(task_id.encode()).hexdigest()[:20]


def check_vm_size(vm_size: str) -> None:
    if is_gpu_size(vm_size):
        raise ComputeRejected("GpuNotSupported", f"{vm_size}: ACI GPU containers were retired on 2025-07-14; "
                                                 "use a VM scale set cluster (provider vmss) for NC/ND/NV sizes")


def _rejected(err: HttpResponseError) -> Exception:
    status = err.status_code or 0
    if status == 429 or status >= 500:
        return err
    return ComputeRejected(getattr(err.error, "code", None) or str(status),
                           getattr(err.error, "message", None) or str(err))


class AciProvider:
    """ComputeProvider (no standing nodes) + TaskRunner over Azure Container Instances."""

    name = "aci"

    def __init__(self, clients: AzureClients, settings: AzureComputeSettings) -> None:
        self._aci = clients.containers
        self._settings = settings
        self._rg = settings.resource_group

    @classmethod
    def from_settings(cls, settings: AzureComputeSettings) -> AciProvider:
        return cls(AzureClients.from_settings(settings), settings)

    # -- the port -------------------------------------------------------------------------
    def reconcile(self, spec: ClusterSpec, target: int, remove: Sequence[str] = ()) -> None:
        check_vm_size(spec.vm_size)  # nothing else to drive: groups exist per task

    def list_instances(self, cluster_key: str) -> list[Instance]:
        return [_instance(group) for group in self._groups(cluster_key)]

    def delete_cluster(self, cluster_key: str) -> None:
        for group in self._groups(cluster_key):
            if text(group.provisioning_state) != "deleting":
                self._delete(group.name)

    def clusters(self) -> set[str]:
        return {g.tags[CLUSTER_TAG] for g in self._aci.container_groups.list_by_resource_group(self._rg)
                if g.tags and CLUSTER_TAG in g.tags}

    # -- TaskRunner ----------------------------------------------------------------------------
    def run_task(self, task: ContainerTask) -> None:
        check_vm_size(task.vm_size)
        name = group_name(task.task_id)
        try:
            self._aci.container_groups.get(self._rg, name)
            return  # started already (a repeated message): observe it, start nothing
        except ResourceNotFoundError:
            pass
        try:
            self._aci.container_groups.begin_create_or_update(self._rg, name, self.group_model(task), polling=False)
        except HttpResponseError as err:
            raise _rejected(err) from err

    def task_status(self, task_id: str) -> TaskStatus:
        try:
            group = self._aci.container_groups.get(self._rg, group_name(task_id))
        except ResourceNotFoundError:
            return TaskStatus("missing")
        return _status(group)

    def fetch_logs(self, task_id: str) -> str:
        try:
            logs = self._aci.containers.list_logs(self._rg, group_name(task_id), CONTAINER)
        except ResourceNotFoundError:
            return ""
        return logs.content or ""

    def delete_task(self, task_id: str) -> None:
        self._delete(group_name(task_id))

    # -- the group model -------------------------------------------------------------------------
    def group_model(self, task: ContainerTask) -> am.ContainerGroup:
        size = size_info(task.vm_size)
        env = [am.EnvironmentVariable(name=k, value=v) for k, v in task.env.items()]
        env += [am.EnvironmentVariable(name=k, secure_value=v) for k, v in task.secure_env.items()]
        container = am.Container(
            name=CONTAINER, image=task.image, command=["/bin/sh", "-c", task.command],
            resources=am.ResourceRequirements(requests=am.ResourceRequests(cpu=float(size.cores),
                                                                           memory_in_gb=float(size.memory_gb))),
            environment_variables=env,
            volume_mounts=[am.VolumeMount(name=s.name, mount_path=s.mount_path, read_only=s.read_only)
                           for s in task.file_shares] or None)
        volumes = [am.Volume(name=s.name, azure_file=am.AzureFileVolume(
            share_name=s.share_name, storage_account_name=s.account_name, storage_account_key=s.account_key,
            read_only=s.read_only)) for s in task.file_shares]
        registry = None
        if task.registry_server:
            registry = [am.ImageRegistryCredential(server=task.registry_server, username=task.registry_username,
                                                   password=task.registry_password)]
        identity = None
        if self._settings.identity_resource_id:
            identity = am.ContainerGroupIdentity(type="UserAssigned", user_assigned_identities={
                self._settings.identity_resource_id: am.UserAssignedIdentities()})
        return am.ContainerGroup(
            location=self._settings.location, os_type="Linux", restart_policy="Never", containers=[container],
            volumes=volumes or None, image_registry_credentials=registry, identity=identity,
            tags={CLUSTER_TAG: task.cluster_key, "batchai-job": task.job_key[:256], "batchai-task": task.task_id})

    def _groups(self, cluster_key: str) -> list[am.ContainerGroup]:
        return [g for g in self._aci.container_groups.list_by_resource_group(self._rg)
                if (g.tags or {}).get(CLUSTER_TAG) == cluster_key]

    def _delete(self, name: str) -> None:
        try:
            self._aci.container_groups.begin_delete(self._rg, name, polling=False)
        except ResourceNotFoundError:
            return


def container_task(task_id: str, cluster: ClusterSpec, job_key: str, job: Mapping[str, Any], command: str,
                   env: Mapping[str, str], task_index: int = 0, default_image: str = DEFAULT_IMAGE) -> ContainerTask:
    """A job's task as a container: image and registry from containerSettings, the user's variables
    plus the AZ_BATCHAI_* ones plus `env` (the task plan's), secrets as secure variables, and the
    Azure Files shares of the cluster (under the mount root) and of the job (under the job's)."""
    registry = (job.get("containerSettings") or {}).get("imageSourceRegistry") or {}
    credentials = registry.get("credentials") or {}
    if credentials.get("passwordSecretReference") and not credentials.get("password"):
        raise ComputeRejected("SecretUnavailable", "registry password Key Vault references are not resolved on ACI")
    secure: dict[str, str] = {}
    for secret in job.get("secrets") or []:
        if secret.get("value") is None:
            raise ComputeRejected("SecretUnavailable", f"secret {secret.get('name')!r} has no value")
        secure[secret["name"]] = str(secret["value"])
    variables = {v["name"]: str(v.get("value", "")) for v in job.get("environmentVariables") or []}
    variables.update({"AZ_BATCHAI_MOUNT_ROOT": MOUNT_ROOT, "AZ_BATCHAI_JOB_MOUNT_ROOT": JOB_MOUNT_ROOT,
                      "AZ_BATCHAI_JOB_TEMP": "/tmp", "AZ_BATCHAI_TASK_INDEX": str(task_index),
                      "AZ_BATCHAI_NUM_GPUS": "0"})
    if job.get("arrayIndex") is not None:  # a task of an array job
        variables.update({"AZ_BATCHAI_ARRAY_INDEX": str(job["arrayIndex"]),
                          "AZ_BATCHAI_ARRAY_COUNT": str(job.get("arrayCount") or "")})
    variables.update(env)
    cluster_shares = ((cluster.properties.get("nodeSetup") or {}).get("mountVolumes") or {}).get("azureFileShares")
    job_shares = (job.get("mountVolumes") or {}).get("azureFileShares")
    shares = [_share(f"cluster{i}", s, MOUNT_ROOT) for i, s in enumerate(cluster_shares or [])]
    shares += [_share(f"job{i}", s, JOB_MOUNT_ROOT) for i, s in enumerate(job_shares or [])]
    return ContainerTask(
        task_id=task_id, cluster_key=cluster.cluster_key, job_key=job_key, vm_size=cluster.vm_size,
        image=registry.get("image") or default_image, command=command, env=variables, secure_env=secure,
        file_shares=tuple(shares), registry_server=registry.get("serverUrl") or "",
        registry_username=credentials.get("username") or "", registry_password=credentials.get("password") or "")


def _share(name: str, ref: Mapping[str, Any], root: str) -> FileShareMount:
    key = (ref.get("credentials") or {}).get("accountKey")
    if not key:
        raise ComputeRejected("SecretUnavailable", f"Azure Files share {ref.get('azureFileUrl')}: ACI needs the "
                                                   "account key (Key Vault references are not resolved here)")
    share = ref["azureFileUrl"].rstrip("/").rsplit("/", 1)[-1]
    return FileShareMount(name=name, account_name=ref["accountName"], share_name=share, account_key=key,
                          mount_path=f"{root}/{ref['relativeMountPath']}")


def _status(group: am.ContainerGroup) -> TaskStatus:
    if text(group.provisioning_state) == "failed":
        events = (group.instance_view.events if group.instance_view else None) or []
        return TaskStatus("failed", None, "; ".join(e.message or "" for e in events) or "provisioning failed")
    view = group.containers[0].instance_view if group.containers else None
    current = view.current_state if view else None
    if current is not None and text(current.state) == "terminated":
        code = current.exit_code
        return TaskStatus("succeeded" if code == 0 else "failed", code, current.detail_status or "")
    if current is not None and text(current.state) == "running":
        return TaskStatus("running")
    return TaskStatus("pending")


def _instance(group: am.ContainerGroup) -> Instance:
    provisioning = text(group.provisioning_state)
    if provisioning == "deleting":
        return Instance(group.name, "deleting")
    status = _status(group)
    if status.state == "failed" and status.exit_code is None:
        return Instance(group.name, "failed", detail=status.detail)
    return Instance(group.name, "creating" if status.state == "pending" else "running",
                    group.ip_address.ip if group.ip_address else "")
