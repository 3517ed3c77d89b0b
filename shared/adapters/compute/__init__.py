"""Compute providers (local processes, VM scale sets, container instances) behind one port.

`provider_for` is the one place that picks the provider for a cluster from the settings (a
bring-your-own cluster's is `byo`'s, whatever the settings);
`file_servers_for` builds the file server VMs of the Azure settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.adapters import secret_box
from shared.adapters.compute.port import ClusterSpec, ComputeProvider
from shared.config import Settings

if TYPE_CHECKING:
    from shared.adapters.compute.fileserver_vm import FileServerVms


def provider_for(settings: Settings, spec: ClusterSpec | None = None) -> ComputeProvider:
    """The provider that runs `spec`'s nodes (spec may be None for clean-up of a deleted cluster)."""
    if spec is not None and spec.properties.get("nodeSource") == "bringYourOwn":
        from shared.adapters.compute.byo import ByoProvider

        return ByoProvider(settings.storage_connection_string)
    if settings.provider == "local":
        from shared.adapters.compute.local import LocalProvider, NodeService

        return LocalProvider(settings.state_dir, settings.storage_connection_string,
                             service=NodeService.from_settings(settings))
    if settings.provider == "vmss":
        from shared.adapters.compute.vmss import VmssProvider

        return VmssProvider.from_settings(settings.azure, open_secrets=lambda doc: secret_box.open_all(settings, doc))
    if settings.provider == "aci":
        from shared.adapters.compute.aci import AciProvider

        return AciProvider.from_settings(settings.azure)
    raise ValueError(f"unknown compute provider {settings.provider!r} (BATCHAI_PROVIDER)")


def file_servers_for(settings: Settings) -> FileServerVms:
    """The file server VMs of the Azure compute settings (provider vmss)."""
    from shared.adapters.azure_clients import AzureClients
    from shared.adapters.compute.fileserver_vm import FileServerVms

    return FileServerVms(AzureClients.from_settings(settings.azure), settings.azure,
                         open_secret=lambda value: secret_box.open_all(settings, value))
