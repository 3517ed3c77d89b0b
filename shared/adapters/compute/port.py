"""The compute provider port: what every provider (local, vmss, aci) implements.

Providers are eventually consistent, asynchronous and idempotent: each call starts or repeats an
operation and returns at once; the result is observed through `list_instances` on a later tick.
Removing an instance that does not exist returns silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class ClusterSpec:
    cluster_key: str  # "{sub}|{rg}|{ws}|{cluster}"
    arm_id: str
    vm_size: str
    vm_priority: str  # "dedicated" | "lowpriority"
    properties: dict[str, Any] = field(default_factory=dict)  # the cluster's stored properties


@dataclass(frozen=True)
class Instance:
    node_id: str
    state: str  # "creating" | "running" | "deleting" | "failed"
    address: str = ""
    detail: str = ""
    # Where the node is logged in to when not at its own address and sshd (a load balancer's inbound NAT)
    login_address: str = ""
    login_port: int = 0


class ComputeProvider(Protocol):
    name: str

    def reconcile(self, spec: ClusterSpec, target: int, remove: Sequence[str] = ()) -> None:
        """Drive the cluster towards `target` instances, removing exactly `remove` first."""

    def list_instances(self, cluster_key: str) -> list[Instance]:
        """The instances that exist now (observed state)."""

    def delete_cluster(self, cluster_key: str) -> None:
        """Remove every instance and backing resource of the cluster."""
