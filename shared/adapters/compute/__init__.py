"""Compute providers (local processes, VM scale sets, container instances) behind one port.

`provider_for` is the one place that picks the provider for a cluster from the settings.
"""

from __future__ import annotations

from shared.adapters.compute.port import ClusterSpec, ComputeProvider
from shared.config import Settings


def provider_for(settings: Settings, spec: ClusterSpec | None = None) -> ComputeProvider:
    """The provider that runs `spec`'s nodes (spec may be None for clean-up of a deleted cluster)."""
    if settings.provider == "local":
        from shared.adapters.compute.local import LocalProvider

        return LocalProvider(settings.state_dir, settings.storage_connection_string)
    if settings.provider == "vmss":
        from shared.adapters.compute.vmss import VmssProvider

        return VmssProvider.from_settings(settings.azure)
    if settings.provider == "aci":
        from shared.adapters.compute.aci import AciProvider

        return AciProvider.from_settings(settings.azure)
    raise ValueError(f"unknown compute provider {settings.provider!r} (BATCHAI_PROVIDER)")
