"""The ARM emulator's instance backend, driven by the real vmss and file server providers (real SDK
clients over https): what the backend is told (create with the provider's own custom data, delete
when a removal completes, eviction), and what ARM reports back from it (power state, addresses)."""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from azure.core.exceptions import HttpResponseError

from shared.adapters.azure_clients import ArmTransport, AzureClients, StaticTokenCredential
from shared.adapters.compute.capabilities import ComputeRejected
from shared.adapters.compute.fileserver_vm import FileServerSpec, FileServerVms, resource_names
from shared.adapters.compute.port import Instance
from shared.adapters.compute.vmss import VmssProvider, node_id_of, scale_set_name
from shared.emulator.arm import ArmEmulator, VmRecord
from tests.azure.helpers import SUBSCRIPTION, azure_settings, cluster_spec
from tests.polling import wait_until

RG = "batchai-compute"


class RecordingBackend:
    """An instance backend that remembers what it was asked and reports the power states a test sets."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.created: list[tuple[VmRecord, bytes]] = []
        self.deleted: list[VmRecord] = []
        self.evictions: list[tuple[VmRecord, Callable[[], None]]] = []
        self.power: dict[str, str] = {}  # computer name -> power state (default running)
        self.refuse: set[str] = set()  # computer names whose creation fails

    def create(self, vm: VmRecord, custom_data: bytes) -> None:
        if vm.computer_name in self.refuse:
            raise RuntimeError(f"machine {vm.computer_name} did not boot")
        with self.lock:
            self.created.append((vm, custom_data))

    def delete(self, vm: VmRecord) -> None:
        with self.lock:
            self.deleted.append(vm)

    def power_state(self, vm: VmRecord) -> str:
        return self.power.get(vm.computer_name, "running")

    def evict(self, vm: VmRecord, delete: Callable[[], None]) -> None:
        with self.lock:
            self.evictions.append((vm, delete))


@pytest.fixture
def backend() -> RecordingBackend:
    return RecordingBackend()


@pytest.fixture
def arm(tmp_path_factory: pytest.TempPathFactory, backend: RecordingBackend) -> Iterator[ArmEmulator]:
    emulator = ArmEmulator(tmp_path_factory.getbasetemp() / "arm", SUBSCRIPTION, backend=backend).start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def clients(arm: ArmEmulator) -> AzureClients:
    transport = ArmTransport(base_url=arm.url, connection_verify=arm.ca_file, retry_backoff_factor=0.01,
                             polling_interval=0.01)
    return AzureClients.build(StaticTokenCredential("arm-token"), arm.subscription_id, transport)


@pytest.fixture
def provider(clients: AzureClients) -> VmssProvider:
    return VmssProvider(clients, azure_settings())


def settled(provider: VmssProvider, key: str, n: int) -> list[Instance]:
    """The cluster's instances once there are n and none is creating or deleting."""
    instances = provider.list_instances(key)
    ok = len(instances) == n and all(i.state not in ("creating", "deleting") for i in instances)
    return instances if ok else []


def test_each_instance_is_created_with_the_custom_data_the_provider_rendered(
        arm: ArmEmulator, provider: VmssProvider, backend: RecordingBackend) -> None:
    spec = cluster_spec("STANDARD_NC6", "lowpriority")
    provider.reconcile(spec, 2)
    sent = arm.requests("PUT", "virtualMachineScaleSets")[0].body  # byte for byte what the provider sent to ARM
    expected = base64.b64decode(sent["properties"]["virtualMachineProfile"]["osProfile"]["customData"])
    assert len(backend.created) == 2  # the instances were added (Creating): the backend boots them now
    assert [data for _, data in backend.created] == [expected, expected]
    first, second = (vm for vm, _ in backend.created)
    name = scale_set_name(spec.cluster_key)
    assert first.computer_name == node_id_of(spec.cluster_key, "0") and second.name == f"{name}_1"
    assert first.resource_id == (f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/Microsoft.Compute/"
                                 f"virtualMachineScaleSets/{name}/virtualMachines/0")
    assert (first.scale_set, first.resource_group, first.subscription_id) == (name, RG, SUBSCRIPTION)
    assert (first.vm_size, first.priority, first.location) == ("STANDARD_NC6", "Spot", "westeurope")
    assert first.tags["batchai-cluster"] == spec.cluster_key and first.vm_id != second.vm_id

    instances = wait_until(lambda: settled(provider, spec.cluster_key, 2), what="two running instances")
    assert [i.state for i in instances] == ["running", "running"]
    for instance, (vm, _) in zip(instances, backend.created, strict=True):
        assert instance.address == vm.private_ip  # what the provider reads from the scale set's NICs
        assert arm.vm_by_ip(instance.address) == vm
    assert arm.vm_by_ip("10.9.9.9") is None
    assert [vm.computer_name for vm in arm.vm_records()] == [i.node_id for i in instances]
    assert backend.deleted == []


def test_removed_instances_are_deleted_from_the_backend_when_their_removal_completes(
        arm: ArmEmulator, provider: VmssProvider, backend: RecordingBackend) -> None:
    spec = cluster_spec()
    provider.reconcile(spec, 3)
    nodes = [i.node_id for i in wait_until(lambda: settled(provider, spec.cluster_key, 3))]

    provider.reconcile(spec, 2)  # scale-in: the highest instance id goes
    assert [i.state for i in provider.list_instances(spec.cluster_key)].count("deleting") == 1
    assert backend.deleted == []  # still deleting: the machine stays until the removal completes
    wait_until(lambda: settled(provider, spec.cluster_key, 2))
    assert [vm.computer_name for vm in backend.deleted] == [nodes[2]]

    provider.reconcile(spec, 1, remove=[nodes[0]])  # deleteInstances
    wait_until(lambda: settled(provider, spec.cluster_key, 1))
    assert [vm.computer_name for vm in backend.deleted] == [nodes[2], nodes[0]]

    provider.delete_cluster(spec.cluster_key)  # the scale set with its last instance
    wait_until(lambda: provider.clusters() == set())
    assert [vm.computer_name for vm in backend.deleted] == [nodes[2], nodes[0], nodes[1]]
    assert arm.vm_records() == [] and len(backend.created) == 3


def test_the_backend_power_state_is_what_the_provider_sees(arm: ArmEmulator, provider: VmssProvider,
                                                           backend: RecordingBackend) -> None:
    spec = cluster_spec()
    provider.reconcile(spec, 3)
    nodes = [i.node_id for i in wait_until(lambda: settled(provider, spec.cluster_key, 3))]
    backend.power[nodes[0]] = "stopped"  # the machine died
    backend.power[nodes[1]] = "starting"  # still booting
    states = {i.node_id: (i.state, i.detail) for i in provider.list_instances(spec.cluster_key)}
    assert states == {nodes[0]: ("failed", "VM is stopped"), nodes[1]: ("creating", ""), nodes[2]: ("running", "")}
    listed = [r for r in arm.requests("GET") if r.path.endswith("/virtualMachines")][-1]
    view = listed.response["value"][0]["properties"]["instanceView"]
    assert view["statuses"][1] == {"code": "PowerState/stopped", "level": "Info", "displayStatus": "VM stopped"}


def test_an_instance_the_backend_cannot_boot_is_failed_with_the_reason(arm: ArmEmulator, provider: VmssProvider,
                                                                      backend: RecordingBackend) -> None:
    spec = cluster_spec()
    backend.refuse.add(node_id_of(spec.cluster_key, "1"))
    provider.reconcile(spec, 2)
    states = wait_until(lambda: {i.node_id: (i.state, i.detail) for i in settled(provider, spec.cluster_key, 2)})
    assert states[node_id_of(spec.cluster_key, "0")] == ("running", "")
    assert states[node_id_of(spec.cluster_key, "1")] == (
        "failed", f"RuntimeError: machine {node_id_of(spec.cluster_key, '1')} did not boot")


def test_a_spot_instance_is_evicted_through_the_backend(arm: ArmEmulator, clients: AzureClients,
                                                        provider: VmssProvider, backend: RecordingBackend) -> None:
    spec = cluster_spec("STANDARD_NC6", "lowpriority")
    name = scale_set_name(spec.cluster_key)
    provider.reconcile(spec, 2)
    nodes = [i.node_id for i in wait_until(lambda: settled(provider, spec.cluster_key, 2))]

    assert clients.compute.virtual_machine_scale_set_vms.simulate_eviction(RG, name, "1") is None
    post = arm.requests("POST", "/simulateEviction")
    assert [(p.status, p.query["api-version"]) for p in post] == [(204, "2026-04-01")]
    assert [vm.computer_name for vm, _ in backend.evictions] == [nodes[1]]
    assert len(provider.list_instances(spec.cluster_key)) == 2  # the notice runs: the VM is still there

    backend.evictions[0][1]()  # the notice ended: eviction policy Delete removes the instance
    assert [i.node_id for i in provider.list_instances(spec.cluster_key)] == [nodes[0]]
    assert clients.compute.virtual_machine_scale_sets.get(RG, name).sku.capacity == 1
    assert [vm.computer_name for vm in backend.deleted] == [nodes[1]]
    backend.evictions[0][1]()  # a second call changes nothing
    assert len(backend.deleted) == 1 and len(provider.list_instances(spec.cluster_key)) == 1


def test_an_eviction_during_a_scale_in_lowers_the_capacity_once(arm: ArmEmulator, clients: AzureClients,
                                                                provider: VmssProvider,
                                                                backend: RecordingBackend) -> None:
    spec = cluster_spec("STANDARD_NC6", "lowpriority")
    name = scale_set_name(spec.cluster_key)
    provider.reconcile(spec, 2)
    nodes = [i.node_id for i in wait_until(lambda: settled(provider, spec.cluster_key, 2))]
    clients.compute.virtual_machine_scale_set_vms.simulate_eviction(RG, name, "1")
    provider.reconcile(spec, 1, remove=[nodes[1]])  # the service removes the node during the notice
    backend.evictions[0][1]()
    assert [i.node_id for i in wait_until(lambda: settled(provider, spec.cluster_key, 1))] == [nodes[0]]
    assert clients.compute.virtual_machine_scale_sets.get(RG, name).sku.capacity == 1
    assert [vm.computer_name for vm in backend.deleted] == [nodes[1]]


def test_eviction_policy_deallocate_keeps_a_stopped_vm(arm: ArmEmulator, clients: AzureClients,
                                                       provider: VmssProvider, backend: RecordingBackend) -> None:
    spec = cluster_spec("STANDARD_NC6", "lowpriority")
    model = provider.scale_set_model(spec, 1)
    model.properties.virtual_machine_profile.eviction_policy = "Deallocate"
    name = scale_set_name(spec.cluster_key)
    clients.compute.virtual_machine_scale_sets.begin_create_or_update(RG, name, model).result()
    clients.compute.virtual_machine_scale_set_vms.simulate_eviction(RG, name, "0")
    backend.evictions[0][1]()
    [instance] = provider.list_instances(spec.cluster_key)
    assert (instance.state, instance.detail) == ("failed", "VM is deallocated")
    assert [vm.computer_name for vm in backend.deleted] == [instance.node_id]  # no machine behind it any more
    assert clients.compute.virtual_machine_scale_sets.get(RG, name).sku.capacity == 1


def test_a_regular_instance_cannot_be_evicted(arm: ArmEmulator, clients: AzureClients, provider: VmssProvider,
                                              backend: RecordingBackend) -> None:
    spec = cluster_spec("STANDARD_D2S_V3", "dedicated", name="cpu")
    provider.reconcile(spec, 1)
    wait_until(lambda: settled(provider, spec.cluster_key, 1))
    with pytest.raises(HttpResponseError) as err:
        clients.compute.virtual_machine_scale_set_vms.simulate_eviction(RG, scale_set_name(spec.cluster_key), "0")
    assert err.value.status_code == 409 and err.value.error.code == "OperationNotAllowed"
    assert backend.evictions == [] and len(provider.list_instances(spec.cluster_key)) == 1


def test_the_default_backend_evicts_at_once(tmp_path: Path) -> None:
    arm = ArmEmulator(tmp_path, SUBSCRIPTION).start()
    try:
        transport = ArmTransport(base_url=arm.url, connection_verify=arm.ca_file, retry_backoff_factor=0.01)
        clients = AzureClients.build(StaticTokenCredential("arm-token"), SUBSCRIPTION, transport)
        provider = VmssProvider(clients, azure_settings())
        spec = cluster_spec("STANDARD_NC6", "lowpriority")
        provider.reconcile(spec, 2)
        wait_until(lambda: settled(provider, spec.cluster_key, 2))
        clients.compute.virtual_machine_scale_set_vms.simulate_eviction(RG, scale_set_name(spec.cluster_key), "0")
        assert [i.node_id for i in provider.list_instances(spec.cluster_key)] == [node_id_of(spec.cluster_key, "1")]
    finally:
        arm.stop()


def test_a_size_the_region_lacks_is_refused_as_sku_not_available(arm: ArmEmulator, clients: AzureClients,
                                                                 provider: VmssProvider,
                                                                 backend: RecordingBackend) -> None:
    with pytest.raises(ComputeRejected) as err:
        provider.reconcile(cluster_spec("Standard_NC6_Promo", name="promo"), 1)
    assert err.value.code == "SkuNotAvailable"
    assert "Standard_NC6_Promo" in str(err.value) and "westeurope" in str(err.value)
    assert arm.requests("PUT", "virtualMachineScaleSets")[-1].status == 409

    arm.refused_sizes.add("standard_nc6")  # in the catalogue, but the region has none now (any case)
    with pytest.raises(ComputeRejected, match="SkuNotAvailable|not available"):
        provider.reconcile(cluster_spec("STANDARD_NC6", name="k80"), 1)

    spec = cluster_spec("standard_d2s_v3", "dedicated", name="cpu")  # sizes compare case-insensitively
    provider.reconcile(spec, 1)
    wait_until(lambda: settled(provider, spec.cluster_key, 1))
    update = {"sku": {"name": "Standard_NC6"}}
    with pytest.raises(HttpResponseError) as patch:
        clients.compute.virtual_machine_scale_sets.begin_update(RG, scale_set_name(spec.cluster_key), update).result()
    assert patch.value.status_code == 409 and patch.value.error.code == "SkuNotAvailable"
    assert len(backend.created) == 1


def test_a_single_vm_is_a_backend_instance_too(arm: ArmEmulator, clients: AzureClients,
                                               backend: RecordingBackend) -> None:
    servers = FileServerVms(clients, azure_settings())
    fs_id = (f"/subscriptions/{SUBSCRIPTION}/resourceGroups/demo/providers/Microsoft.BatchAI/workspaces/ws/"
             "fileServers/fs")
    properties = {"vmSize": "Standard_D2s_v3", "dataDisks": {"diskSizeInGB": 64, "diskCount": 1,
                                                               "storageAccountType": "Premium_LRS"},
                  "sshConfiguration": {"userAccountSettings": {"adminUserName": "demo",
                                                               "adminUserSshPublicKey": "ssh-ed25519 AAAA demo"}}}
    spec = FileServerSpec.from_properties(fs_id, properties)
    done = wait_until(lambda: (op := servers.provision_file_server(spec)).state == "succeeded" and op)
    put = arm.requests("PUT", "/virtualMachines/")[0].body
    [(vm, data)] = backend.created
    assert data == base64.b64decode(put["properties"]["osProfile"]["customData"])
    assert (vm.name, vm.scale_set, vm.vm_size, vm.priority) == (resource_names(spec).vm, "", "Standard_D2s_v3",
                                                                "Regular")
    assert vm.private_ip == done.mount_settings["fileServerInternalIP"] and arm.vm_by_ip(vm.private_ip) == vm
    wait_until(lambda: servers.delete_file_server(spec).state == "deleted")
    assert backend.deleted == [vm]

    refused = FileServerSpec.from_properties(fs_id + "2", dict(properties, vmSize="Standard_ZZ9"))
    with pytest.raises(ComputeRejected) as err:
        wait_until(lambda: servers.provision_file_server(refused).state == "never")
    assert err.value.code == "SkuNotAvailable"
