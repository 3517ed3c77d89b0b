"""A machine its owner brought to a bring-your-own cluster: its agent config and its options.

`batchai node join` writes ``<install dir>/agent.json`` (nothing secret) and the node token beside it
(``node-token``, 0600); the agent runs with ``python -m shared.agent --joined <install dir>/agent.json``.
Keys: clusterKey, nodeId, serviceUrl, workdir (required); caFile (the CA of serviceUrl; none: the
system's), address (the node's address as others reach it), storageEndpoints (templates with
{account}, for job mounts of other accounts), gpus (a GPU count the agent cannot see itself).

Such a node has no managed identity and no IMDS: it proves itself with its node token, reaches storage
with the short-lived SAS the service grants it (`ScopedStorage`), learns the message key from that
grant, and leaves Key Vault references to the service. Mounts are emulated as on a process node; its
jobs run as the pool's users where the agent is root (`shared.agent.isolation`).

A node token does not expire on the way, so a 401 of the node API means the service no longer takes
this node (its join token was revoked or expired): `Refused` ends the agent with `REFUSED_EXIT`, which
its systemd unit does not restart; the machine must join again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.agent.agent import AgentOptions
from shared.agent.node_api import NodeApi, NodeApiRefused
from shared.agent.scoped_storage import ScopedStorage
from shared.config import PUBLIC_STORAGE_ENDPOINTS, Settings

CONFIG = "agent.json"
REFUSED_EXIT = 3  # the service refuses this node's credential: restarting would not help
NODE_TOKEN = "node-token"
REQUIRED = ("clusterKey", "nodeId", "serviceUrl", "workdir")


@dataclass(frozen=True)
class JoinedConfig:
    cluster_key: str
    node_id: str
    service_url: str
    workdir: Path
    token_file: Path
    ca_file: str = ""
    address: str = "127.0.0.1"
    storage_endpoints: dict[str, str] = field(default_factory=lambda: dict(PUBLIC_STORAGE_ENDPOINTS))
    gpus: int | None = None

    @classmethod
    def load(cls, path: Path) -> JoinedConfig:
        doc: dict[str, Any] = json.loads(path.read_text())
        missing = [k for k in REQUIRED if not doc.get(k)]
        if missing:
            raise ValueError(f"{path} lacks {', '.join(missing)}")
        gpus = doc.get("gpus")
        if gpus is not None and (not isinstance(gpus, int) or isinstance(gpus, bool) or gpus < 0):
            raise ValueError(f"gpus must be a count of GPUs, not {gpus!r}")
        return cls(cluster_key=str(doc["clusterKey"]), node_id=str(doc["nodeId"]), service_url=str(doc["serviceUrl"]),
                   workdir=Path(doc["workdir"]), token_file=path.parent / NODE_TOKEN,
                   ca_file=str(doc.get("caFile") or ""), address=str(doc.get("address") or "127.0.0.1"),
                   storage_endpoints={str(k): str(v) for k, v in dict(doc.get("storageEndpoints")
                                                                       or PUBLIC_STORAGE_ENDPOINTS).items()},
                   gpus=gpus)


def refused() -> None:
    raise NodeApiRefused(401, "the service no longer takes this node's credential (its join token was revoked "
                              "or expired): join again with a valid token")


def joined_options(config: JoinedConfig, heartbeat_s: float, settings: Settings) -> AgentOptions:
    try:
        token = config.token_file.read_text().strip()
    except FileNotFoundError:
        raise SystemExit(f"{config.token_file} is missing: the node token proves this node to the service") from None
    api = NodeApi(config.service_url, config.cluster_key, config.node_id, lambda: token, token_refused=refused,
                  ca_file=config.ca_file)
    storage = ScopedStorage(api, config.storage_endpoints)
    return AgentOptions(
        storage=storage, api=api, message_key=storage.message_key, cluster_key=config.cluster_key,
        node_id=config.node_id, workdir=config.workdir, state_dir=config.workdir / "state", address=config.address,
        heartbeat_s=heartbeat_s, declared_gpus=config.gpus, poll_max_s=settings.agent_poll_max_s,
        poll_min_s=min(settings.agent_poll_min_s, settings.agent_poll_max_s))
