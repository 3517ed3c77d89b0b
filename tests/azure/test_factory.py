"""provider_for picks the Azure providers from BATCHAI_PROVIDER, with their settings."""

from __future__ import annotations

import dataclasses

import pytest

from shared.adapters.compute import provider_for
from shared.adapters.compute.aci import AciProvider
from shared.adapters.compute.capabilities import ScaleInProtection, TaskRunner
from shared.adapters.compute.vmss import VmssProvider
from shared.config import Settings
from tests.azure.helpers import azure_settings


def settings(provider: str, **azure: str) -> Settings:
    return dataclasses.replace(Settings.from_env(), provider=provider, azure=azure_settings(**azure))


def test_vmss_and_aci_are_chosen_by_name() -> None:
    vmss = provider_for(settings("vmss"))
    aci = provider_for(settings("aci"))
    assert isinstance(vmss, VmssProvider) and vmss.name == "vmss" and isinstance(vmss, ScaleInProtection)
    assert isinstance(aci, AciProvider) and aci.name == "aci" and isinstance(aci, TaskRunner)
    assert not isinstance(vmss, TaskRunner)


def test_a_subscription_is_required() -> None:
    with pytest.raises(ValueError, match="BATCHAI_AZURE_SUBSCRIPTION_ID"):
        provider_for(settings("vmss", subscription_id=""))
