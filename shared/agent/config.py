"""The agent config of a machine, ``/etc/batchai/agent.json`` (written by cloud-init; nothing secret).

Keys (see CONTRACTS.md, section D): clusterKey, serviceUrl (the API nodes get their credentials
from), imdsUrl, tokenResource (the audience of the node's IMDS token), storage (the service
account's name and endpoints), storageEndpoints (templates with {account}: how this node reaches a
storage account by name), mountRoot ($AZ_BATCHAI_MOUNT_ROOT, where cloud-init mounted the cluster's
volumes), workdir, gpu. Optional: gpus (a GPU count the agent cannot see itself, e.g. no driver in
its reach), fileServerIps ({file server ARM id: internal IP}, for job volumes on file servers),
identityClientId (the user-assigned identity the node reads Key Vault secrets with; none: its system
identity).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REQUIRED = ("clusterKey", "serviceUrl", "imdsUrl", "tokenResource", "storageEndpoints", "mountRoot", "workdir")


@dataclass(frozen=True)
class AgentConfig:
    cluster_key: str
    service_url: str
    imds_url: str
    token_resource: str
    storage_endpoints: dict[str, str]
    mount_root: Path
    workdir: Path
    gpu: bool = False
    gpus: int | None = None
    storage: dict[str, str] = field(default_factory=dict)
    file_server_ips: dict[str, str] = field(default_factory=dict)
    identity_client_id: str = ""

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> AgentConfig:
        missing = [k for k in REQUIRED if not doc.get(k)]
        if missing:
            raise ValueError(f"the agent config lacks {', '.join(missing)}")
        endpoints = {str(k): str(v) for k, v in dict(doc["storageEndpoints"]).items()}
        if "{account}" not in endpoints.get("blob", ""):
            raise ValueError("storageEndpoints.blob must be a template with {account}")
        gpus = doc.get("gpus")
        if gpus is not None and (not isinstance(gpus, int) or isinstance(gpus, bool) or gpus < 0):
            raise ValueError(f"gpus must be a count of GPUs, not {gpus!r}")
        return cls(cluster_key=str(doc["clusterKey"]), service_url=str(doc["serviceUrl"]),
                   imds_url=str(doc["imdsUrl"]), token_resource=str(doc["tokenResource"]),
                   storage_endpoints=endpoints, mount_root=Path(doc["mountRoot"]), workdir=Path(doc["workdir"]),
                   gpu=bool(doc.get("gpu")), gpus=gpus, storage=dict(doc.get("storage") or {}),
                   file_server_ips={str(k).lower(): str(v) for k, v in dict(doc.get("fileServerIps") or {}).items()},
                   identity_client_id=str(doc.get("identityClientId") or ""))

    @classmethod
    def load(cls, path: Path) -> AgentConfig:
        return cls.from_dict(json.loads(path.read_text()))
