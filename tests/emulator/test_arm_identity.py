"""Managed identities of scale sets in the ARM emulator, as Azure returns them to the real SDK, and
the identity records the rest of the emulated cloud (IMDS) signs tokens for."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.compute import models as cm

from shared.adapters.azure_clients import ArmTransport, AzureClients, StaticTokenCredential
from shared.adapters.compute.vmss import VmssProvider, scale_set_name
from shared.emulator.arm import ArmEmulator, Identity
from tests.azure.helpers import SUBSCRIPTION, azure_settings, cluster_spec

RG = "batchai-compute"
TENANT = "72f988bf-0000-4000-8000-000000000047"
USER_ID = azure_settings().identity_resource_id


@pytest.fixture
def arm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArmEmulator]:
    emulator = ArmEmulator(tmp_path_factory.getbasetemp() / "arm", SUBSCRIPTION, tenant_id=TENANT).start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def clients(arm: ArmEmulator) -> AzureClients:
    transport = ArmTransport(base_url=arm.url, connection_verify=arm.ca_file, retry_backoff_factor=0.01,
                             polling_interval=0.01)
    return AzureClients.build(StaticTokenCredential("arm-token"), arm.subscription_id, transport)


def create(clients: AzureClients, name: str, identity: cm.VirtualMachineScaleSetIdentity | None,
           capacity: int = 1) -> cm.VirtualMachineScaleSet:
    spec = cluster_spec(name=name)
    model = VmssProvider(clients, azure_settings()).scale_set_model(spec, capacity)
    model.identity = identity
    return clients.compute.virtual_machine_scale_sets.begin_create_or_update(
        RG, scale_set_name(spec.cluster_key), model).result()


def system_mirid(name: str) -> str:
    """As Azure writes it in a token's xms_mirid: "resourcegroups" in lower case."""
    return f"/subscriptions/{SUBSCRIPTION}/resourcegroups/{RG}/providers/Microsoft.Compute/" \
           f"virtualMachineScaleSets/{name}"


def test_a_user_assigned_identity_reports_its_principal_and_client_ids(arm: ArmEmulator,
                                                                       clients: AzureClients) -> None:
    spec = cluster_spec(name="user")
    VmssProvider(clients, azure_settings()).reconcile(spec, 2)  # the provider's own model: both kinds
    got = clients.compute.virtual_machine_scale_sets.get(RG, scale_set_name(spec.cluster_key)).identity
    assert got.type == "SystemAssigned, UserAssigned" and got.principal_id and got.tenant_id
    assigned = got.user_assigned_identities[USER_ID]
    expected = arm.user_identity(USER_ID)
    assert (assigned.principal_id, assigned.client_id) == (expected.principal_id, expected.client_id)
    assert expected == Identity("user", USER_ID, str(uuid.uuid5(uuid.NAMESPACE_URL, USER_ID.lower())),
                                expected.client_id, TENANT)
    uuid.UUID(expected.client_id)
    assert [vm.identities[1:] for vm in arm.vm_records()] == [(expected,), (expected,)]
    assert [vm.identities[0].kind for vm in arm.vm_records()] == ["system", "system"]


def test_a_system_assigned_identity_belongs_to_its_scale_set(arm: ArmEmulator, clients: AzureClients) -> None:
    first = create(clients, "sys1", cm.VirtualMachineScaleSetIdentity(type="SystemAssigned"))
    second = create(clients, "sys2", cm.VirtualMachineScaleSetIdentity(type="SystemAssigned"))
    for created in (first, second):
        got = clients.compute.virtual_machine_scale_sets.get(RG, created.name).identity
        assert got.type == "SystemAssigned" and got.tenant_id == TENANT and not got.user_assigned_identities
        assert got.principal_id == created.identity.principal_id  # the PUT's answer already carries it
        [vm] = [vm for vm in arm.vm_records() if vm.scale_set == created.name]
        [identity] = vm.identities
        assert (identity.kind, identity.resource_id, identity.principal_id, identity.tenant_id) == (
            "system", system_mirid(created.name), got.principal_id, TENANT)
        assert uuid.UUID(identity.client_id) and identity.client_id != identity.principal_id
    assert first.identity.principal_id != second.identity.principal_id


def test_both_kinds_together(arm: ArmEmulator, clients: AzureClients) -> None:
    identity = cm.VirtualMachineScaleSetIdentity(type="SystemAssigned, UserAssigned", user_assigned_identities={
        USER_ID: cm.UserAssignedIdentitiesValue()})
    created = create(clients, "both", identity, capacity=2)
    got = clients.compute.virtual_machine_scale_sets.get(RG, created.name).identity
    assert got.type == "SystemAssigned, UserAssigned" and got.principal_id and got.tenant_id == TENANT
    assert got.user_assigned_identities[USER_ID].principal_id == arm.user_identity(USER_ID).principal_id
    for vm in arm.vm_records():
        assert [(i.kind, i.resource_id) for i in vm.identities] == [("system", system_mirid(created.name)),
                                                                    ("user", USER_ID)]
        assert vm.identities[0].principal_id == got.principal_id


def test_identities_azure_would_refuse(arm: ArmEmulator, clients: AzureClients) -> None:
    with pytest.raises(HttpResponseError) as err:
        create(clients, "nousers", cm.VirtualMachineScaleSetIdentity(type="UserAssigned"))
    assert err.value.status_code == 400 and err.value.error.code == "InvalidParameter"
    with pytest.raises(HttpResponseError) as err:
        create(clients, "badid", cm.VirtualMachineScaleSetIdentity(type="UserAssigned", user_assigned_identities={
            "/subscriptions/s/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/a":
                cm.UserAssignedIdentitiesValue()}))
    assert err.value.status_code == 400
    assert arm.vm_records() == []
    none = create(clients, "none", None)
    assert none.identity is None and [vm.identities for vm in arm.vm_records()] == [()]
