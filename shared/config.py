"""Runtime settings, read once from the environment. Owns every BATCHAI_* variable name."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def azurite_connection_string(host: str = "127.0.0.1", blob: int = 10000, queue: int = 10001,
                              table: int = 10002, account: str = AZURITE_ACCOUNT, key: str = AZURITE_KEY) -> str:
    base = f"http://{host}"
    return (
        f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={key};"
        f"BlobEndpoint={base}:{blob}/{account};QueueEndpoint={base}:{queue}/{account};"
        f"TableEndpoint={base}:{table}/{account};"
    )


@dataclass(frozen=True)
class Settings:
    storage_connection_string: str
    state_dir: Path
    provider: str
    idle_timeout_s: float
    max_retries: int
    default_location: str
    azure: AzureComputeSettings = field(default_factory=lambda: AzureComputeSettings.from_env())
    quota: QuotaSettings = field(default_factory=lambda: QuotaSettings.from_env())
    heartbeat_timeout_s: float = 120.0  # a node silent this long is lost (local stack: 15)
    node_start_timeout_s: float = 1800.0  # starting/preparing longer than this: unusable
    on_azure: bool = False  # the node agent runs on an Azure VM (Scheduled Events via IMDS)
    agent_poll_max_s: float = 1.0  # longest wait between polls of a node's queue (local stack: 0.1)
    agent_poll_min_s: float = 0.1  # first wait after a message or a task's end (local stack: 0.02)
    # The account users' data and ingress live in (job submissions queue, scoring triggers
    # container); the service's own account when unset. BATCHAI_DATA_CONNECTION_STRING.
    data_connection_string: str = ""
    # Bearer tokens (people, and nodes' managed identities) are signed by this issuer (its
    # discovery document lives at {issuer}/.well-known/openid-configuration). BATCHAI_TOKEN_ISSUER.
    token_issuer: str = ""
    # A CA bundle to trust when fetching the issuer's discovery document and keys (the local
    # stack's CA); unset: the system CAs. BATCHAI_TOKEN_ISSUER_CA_FILE.
    token_issuer_ca_file: str = ""
    # The key secrets are sealed with at rest (32 bytes, base64). BATCHAI_SECRETS_KEY.
    secrets_key: str = ""
    # Where Key Vault secret references may point: host patterns ("*" is one DNS label), comma
    # separated. BATCHAI_KEY_VAULT_HOSTS; Azure's vaults by default.
    key_vault_hosts: tuple[str, ...] = ("*.vault.azure.net",)
    # The `aud` values the API accepts in callers' tokens (Azure: the app registration's Application ID
    # URI and/or client id; the local stack: LOCAL_API_AUDIENCE). None: every token is refused.
    # BATCHAI_API_AUDIENCE, comma-separated.
    api_audiences: tuple[str, ...] = ()
    # Object ids that hold Owner over every scope the service serves, without a role assignment (the
    # deployer; the local stack's owner principal), so that someone can make the first assignments.
    # BATCHAI_OWNER_OBJECT_IDS, comma-separated.
    owner_object_ids: frozenset[str] = frozenset()
    # Node messages are signed with this Ed25519 key (32 bytes, base64; see
    # shared.adapters.message_signing). BATCHAI_MESSAGE_KEY: the service's.
    message_key: str = ""
    # The public half, which a process node's agent verifies messages with. BATCHAI_MESSAGE_PUBLIC_KEY.
    message_public_key: str = ""
    # A CA bundle to trust for Key Vault (the local stack's); unset: the system CAs. BATCHAI_KEY_VAULT_CA_FILE.
    key_vault_ca_file: str = ""
    # The local stack's token issuer (its key directory): the service signs its own managed-identity
    # tokens with it, standing in for the Function app's identity; unset (Azure): the app's managed
    # identity through azure-identity. BATCHAI_LOCAL_ISSUER_DIR.
    local_issuer_dir: str = ""
    # The GPUs a node agent declares where it cannot see them itself (no driver in its reach; the local
    # stack's process nodes of a GPU size). BATCHAI_NODE_GPUS; unset: what nvidia-smi lists.
    node_gpus: int | None = None

    @property
    def data_connection(self) -> str:
        return self.data_connection_string or self.storage_connection_string

    @classmethod
    def from_env(cls) -> Settings:
        """The settings of the current environment, memoised on every variable they may read (`read_by_settings`,
        the compute and quota settings' included) and the working directory (the state directory is resolved
        against it): the API reads them on every request, and resolving a path costs a system call per
        component."""
        return _settings_of(tuple(sorted((k, v) for k, v in os.environ.items() if read_by_settings(k))), os.getcwd())

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> Settings:
        return cls(
            storage_connection_string=env.get("BATCHAI_STORAGE_CONNECTION_STRING")
            or env.get("AzureWebJobsStorage")
            or azurite_connection_string(),
            state_dir=Path(env.get("BATCHAI_STATE_DIR", ".batchai")).resolve(),
            provider=env.get("BATCHAI_PROVIDER", "local"),
            idle_timeout_s=float(env.get("BATCHAI_IDLE_TIMEOUT_S", "300")),
            max_retries=int(env.get("BATCHAI_MAX_RETRIES", "3")),
            default_location=env.get("BATCHAI_LOCATION", "local"),
            heartbeat_timeout_s=float(env.get("BATCHAI_HEARTBEAT_TIMEOUT_S", "120")),
            node_start_timeout_s=float(env.get("BATCHAI_NODE_START_TIMEOUT_S", "1800")),
            on_azure=env.get("BATCHAI_ON_AZURE", "").lower() in ("1", "true", "yes"),
            agent_poll_max_s=float(env.get("BATCHAI_AGENT_POLL_MAX_S", "1.0")),
            agent_poll_min_s=float(env.get("BATCHAI_AGENT_POLL_MIN_S", "0.1")),
            data_connection_string=env.get("BATCHAI_DATA_CONNECTION_STRING", ""),
            token_issuer=env.get("BATCHAI_TOKEN_ISSUER", ""),
            token_issuer_ca_file=env.get("BATCHAI_TOKEN_ISSUER_CA_FILE", ""),
            secrets_key=env.get("BATCHAI_SECRETS_KEY", ""),
            key_vault_hosts=tuple(h.strip().lower() for h in env.get("BATCHAI_KEY_VAULT_HOSTS",
                                                                     "*.vault.azure.net").split(",") if h.strip()),
            api_audiences=tuple(_items(env.get("BATCHAI_API_AUDIENCE", ""))),
            owner_object_ids=frozenset(i.lower() for i in _items(env.get("BATCHAI_OWNER_OBJECT_IDS", ""))),
            message_key=env.get("BATCHAI_MESSAGE_KEY", ""),
            message_public_key=env.get("BATCHAI_MESSAGE_PUBLIC_KEY", ""),
            key_vault_ca_file=env.get("BATCHAI_KEY_VAULT_CA_FILE", ""),
            local_issuer_dir=env.get("BATCHAI_LOCAL_ISSUER_DIR", ""),
            node_gpus=_count(env.get("BATCHAI_NODE_GPUS", ""), "BATCHAI_NODE_GPUS"),
        )


def read_by_settings(name: str) -> bool:
    """Whether `Settings` may read the variable: every BATCHAI_* one, and the Functions host's storage."""
    return name.startswith("BATCHAI_") or name == "AzureWebJobsStorage"


@lru_cache(maxsize=16)
def _settings_of(values: tuple[tuple[str, str | None], ...], cwd: str) -> Settings:
    return Settings.from_mapping({name: value for name, value in values if value is not None})


@dataclass(frozen=True)
class AzureComputeSettings:
    """Where the vmss/aci providers and file server VMs create resources, and what nodes get.

    Nodes reach the service's storage with the user-assigned identity (client id), never a key.
    """

    subscription_id: str = ""  # BATCHAI_AZURE_SUBSCRIPTION_ID
    resource_group: str = ""  # BATCHAI_COMPUTE_RESOURCE_GROUP
    location: str = ""  # BATCHAI_COMPUTE_LOCATION
    subnet_id: str = ""  # BATCHAI_SUBNET_ID: default subnet of nodes and file servers
    identity_resource_id: str = ""  # BATCHAI_IDENTITY_RESOURCE_ID: user-assigned identity given to nodes
    identity_client_id: str = ""  # BATCHAI_IDENTITY_CLIENT_ID
    ssh_public_key: str = ""  # BATCHAI_SSH_PUBLIC_KEY: used when a cluster gives none
    storage_account: str = ""  # BATCHAI_STORAGE_ACCOUNT: the service's account name, reached by identity
    arm_endpoint: str = "https://management.azure.com"  # BATCHAI_ARM_ENDPOINT
    # BATCHAI_ARM_CA_FILE: a CA bundle to trust for ARM (a private endpoint or a test double); unset: system CAs
    arm_ca_file: str = ""
    # BATCHAI_ARM_TOKEN: a fixed bearer token, honoured only with a non-public BATCHAI_ARM_ENDPOINT
    arm_token: str = ""
    # What machines are told in their custom data (none of it secret). The service URL and its CA
    # serve every kind of node (local agent processes too: they fetch their tasks there):
    node_service_url: str = ""  # BATCHAI_NODE_SERVICE_URL: the API nodes call for credentials and tasks
    node_ca_file: str = ""  # BATCHAI_NODE_CA_FILE: a CA (PEM) nodes must trust for that URL; unset: public CAs
    node_token_audience: str = "api://batchai-nodes"  # BATCHAI_NODE_TOKEN_AUDIENCE: resource of their IMDS token
    imds_url: str = "http://169.254.169.254"  # BATCHAI_IMDS_URL: the instance metadata service nodes ask
    # BATCHAI_NODE_STORAGE_ENDPOINTS: JSON {"blob"|"queue"|"table": template with {account}}: how nodes
    # reach a storage account by name (Azure: https://{account}.blob.core.windows.net, ...)
    node_storage_endpoints: dict[str, str] = field(default_factory=lambda: dict(PUBLIC_STORAGE_ENDPOINTS))
    # BATCHAI_NODE_SSH_NAT=1: each cluster gets a public IP and a load balancer whose inbound NAT pool
    # forwards a port per node to its sshd (Batch AI's remote login); unset: nodes have private addresses only
    node_ssh_nat: bool = False

    @classmethod
    def from_env(cls) -> AzureComputeSettings:
        env = os.environ
        return cls(
            subscription_id=env.get("BATCHAI_AZURE_SUBSCRIPTION_ID", ""),
            resource_group=env.get("BATCHAI_COMPUTE_RESOURCE_GROUP", ""),
            location=env.get("BATCHAI_COMPUTE_LOCATION", ""),
            subnet_id=env.get("BATCHAI_SUBNET_ID", ""),
            identity_resource_id=env.get("BATCHAI_IDENTITY_RESOURCE_ID", ""),
            identity_client_id=env.get("BATCHAI_IDENTITY_CLIENT_ID", ""),
            ssh_public_key=env.get("BATCHAI_SSH_PUBLIC_KEY", ""),
            storage_account=env.get("BATCHAI_STORAGE_ACCOUNT", ""),
            arm_endpoint=env.get("BATCHAI_ARM_ENDPOINT", "https://management.azure.com"),
            arm_ca_file=env.get("BATCHAI_ARM_CA_FILE", ""),
            arm_token=env.get("BATCHAI_ARM_TOKEN", ""),
            node_service_url=env.get("BATCHAI_NODE_SERVICE_URL", ""),
            node_ca_file=env.get("BATCHAI_NODE_CA_FILE", ""),
            node_token_audience=env.get("BATCHAI_NODE_TOKEN_AUDIENCE", "api://batchai-nodes"),
            imds_url=env.get("BATCHAI_IMDS_URL", "http://169.254.169.254"),
            node_storage_endpoints=_endpoints(env.get("BATCHAI_NODE_STORAGE_ENDPOINTS", "")),
            node_ssh_nat=env.get("BATCHAI_NODE_SSH_NAT", "") == "1",
        )


@dataclass(frozen=True)
class QuotaSettings:
    """The limits the usages API reports (Batch AI's per-subscription quotas)."""

    clusters: int = 20  # BATCHAI_QUOTA_CLUSTERS
    dedicated_cores: int = 600  # BATCHAI_QUOTA_DEDICATED_CORES
    lowpriority_cores: int = 150  # BATCHAI_QUOTA_LOWPRIORITY_CORES
    # Per VM family limits ("standardNCFamily=24,standardNDSFamily=0"); a family not named gets the
    # regional limit. BATCHAI_QUOTA_DEDICATED_FAMILY_CORES, BATCHAI_QUOTA_LOWPRIORITY_FAMILY_CORES.
    dedicated_family_cores: dict[str, int] = field(default_factory=dict)
    lowpriority_family_cores: dict[str, int] = field(default_factory=dict)

    def family_limit(self, family: str, priority: str) -> int:
        if priority == "lowpriority":
            return self.lowpriority_family_cores.get(family, self.lowpriority_cores)
        return self.dedicated_family_cores.get(family, self.dedicated_cores)

    @classmethod
    def from_env(cls) -> QuotaSettings:
        env = os.environ
        return cls(
            clusters=int(env.get("BATCHAI_QUOTA_CLUSTERS", "20")),
            dedicated_cores=int(env.get("BATCHAI_QUOTA_DEDICATED_CORES", "600")),
            lowpriority_cores=int(env.get("BATCHAI_QUOTA_LOWPRIORITY_CORES", "150")),
            dedicated_family_cores=_limits(env.get("BATCHAI_QUOTA_DEDICATED_FAMILY_CORES", "")),
            lowpriority_family_cores=_limits(env.get("BATCHAI_QUOTA_LOWPRIORITY_FAMILY_CORES", "")),
        )


PUBLIC_STORAGE_ENDPOINTS = {kind: f"https://{{account}}.{kind}.core.windows.net" for kind in ("blob", "queue", "table")}


def _endpoints(text: str) -> dict[str, str]:
    """The JSON of BATCHAI_NODE_STORAGE_ENDPOINTS over the public defaults; ValueError when malformed."""
    if not text.strip():
        return dict(PUBLIC_STORAGE_ENDPOINTS)
    given = json.loads(text)
    if not isinstance(given, dict) or not all(k in PUBLIC_STORAGE_ENDPOINTS and "{account}" in str(v)
                                              for k, v in given.items()):
        raise ValueError("BATCHAI_NODE_STORAGE_ENDPOINTS: a JSON object of blob/queue/table templates with {account}")
    return {**PUBLIC_STORAGE_ENDPOINTS, **{k: str(v) for k, v in given.items()}}


def _count(text: str, name: str) -> int | None:
    """A count (an integer of at least 0) or None when unset; ValueError otherwise."""
    if not text.strip():
        return None
    if not text.strip().isdigit():
        raise ValueError(f"{name}: a count of at least 0, not {text!r}")
    return int(text)


def _items(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _limits(text: str) -> dict[str, int]:
    """"family=N,family=N" -> {family: N}; raises ValueError on a malformed entry."""
    limits = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"not a family=limit entry: {part!r}")
        limits[name.strip()] = int(value)
    return limits
