"""Construction of the Azure management clients (compute, network, container instances).

Owns the credential choice (the user-assigned managed identity when a client id is configured,
else `DefaultAzureCredential`; a fixed token from BATCHAI_ARM_TOKEN only towards a non-public ARM
endpoint set with BATCHAI_ARM_ENDPOINT, e.g. a test double, never towards management.azure.com) and
the transport knobs every client shares: the ARM endpoint,
TLS verification and the retry policy. azure-core's RetryPolicy retries 408/429/5xx and honours
`Retry-After`; tests shrink the backoff, never replace the policy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from azure.core.credentials import AccessToken, TokenCredential
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.containerinstance import ContainerInstanceManagementClient
from azure.mgmt.network import NetworkManagementClient

from shared.config import AzureComputeSettings


@dataclass(frozen=True)
class ArmTransport:
    """How clients reach ARM: the endpoint, the CA bundle (or True), and the retry knobs."""

    base_url: str = "https://management.azure.com"
    connection_verify: bool | str = True
    retry_total: int = 10
    retry_backoff_factor: float = 0.8
    retry_backoff_max: float = 120.0
    polling_interval: float = 30.0  # only used when a caller asks a poller to wait

    def client_kwargs(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "connection_verify": self.connection_verify,
            "retry_total": self.retry_total,
            "retry_backoff_factor": self.retry_backoff_factor,
            "retry_backoff_max": self.retry_backoff_max,
            "polling_interval": self.polling_interval,
            # ARM scope of the endpoint the clients talk to (management.azure.com in public cloud).
            "credential_scopes": ["https://management.azure.com/.default"],
        }


PUBLIC_ARM = "https://management.azure.com"


class StaticTokenCredential:
    """A TokenCredential handing out one fixed bearer token (BATCHAI_ARM_TOKEN, non-public ARM only)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + 3600)


def arm_credential(settings: AzureComputeSettings) -> TokenCredential:
    """The service's identity towards ARM: its user-assigned identity when configured."""
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    if settings.arm_token:
        if settings.arm_endpoint.rstrip("/").lower() == PUBLIC_ARM:
            raise ValueError("BATCHAI_ARM_TOKEN is only honoured with a non-public BATCHAI_ARM_ENDPOINT")
        return StaticTokenCredential(settings.arm_token)
    if settings.identity_client_id:
        return ManagedIdentityCredential(client_id=settings.identity_client_id)
    return DefaultAzureCredential()


@dataclass(frozen=True)
class AzureClients:
    """The three management clients of one subscription, sharing credential and transport."""

    compute: ComputeManagementClient
    network: NetworkManagementClient
    containers: ContainerInstanceManagementClient

    @classmethod
    def build(cls, credential: TokenCredential, subscription_id: str,
              transport: ArmTransport | None = None) -> AzureClients:
        kwargs = (transport or ArmTransport()).client_kwargs()
        return cls(
            compute=ComputeManagementClient(credential, subscription_id, **kwargs),
            network=NetworkManagementClient(credential, subscription_id, **kwargs),
            containers=ContainerInstanceManagementClient(credential, subscription_id, **kwargs),
        )

    @classmethod
    def from_settings(cls, settings: AzureComputeSettings) -> AzureClients:
        if not settings.subscription_id:
            raise ValueError("BATCHAI_AZURE_SUBSCRIPTION_ID is required for Azure compute")
        transport = ArmTransport(base_url=settings.arm_endpoint, connection_verify=settings.arm_ca_file or True)
        return cls.build(arm_credential(settings), settings.subscription_id, transport)
