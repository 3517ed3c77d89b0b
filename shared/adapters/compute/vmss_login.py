"""Remote login to scale-set nodes through a load balancer, as Batch AI's clusters had it: each cluster
gets a public IP and a load balancer whose inbound NAT pool forwards one frontend port per node
(`PORT_START` + the node's instance id) to the node's sshd; listRemoteLoginInformation reports that
public address and port. Used when `AzureComputeSettings.node_ssh_nat` is on (else nodes have private
addresses only, reached from the cluster's virtual network).

Non-blocking like the provider: `ensure` starts what is missing (the public IP, then the load balancer)
and answers the NAT pool's id once it exists; `delete` removes the load balancer, then the public IP,
once the scale set that used them is gone. Both are tagged with the cluster key, so that the provider
lists the cluster (and its clean-up runs) while any of them is left.
"""

from __future__ import annotations

from typing import Any

from azure.core.exceptions import ResourceNotFoundError

NAT_POOL = "ssh"
FRONTEND = "frontend"
PORT_START, PORT_END = 50000, 50999  # one frontend port per instance id, as Batch AI's clusters used
SSH_PORT = 22
NETWORK = "/providers/Microsoft.Network"


def public_ip_name(scale_set: str) -> str:
    return f"{scale_set}-ip"


def load_balancer_name(scale_set: str) -> str:
    return f"{scale_set}-lb"


class NodeLogins:
    def __init__(self, network: Any, subscription_id: str, resource_group: str, location: str) -> None:
        self._network = network
        self._rg = resource_group
        self._location = location
        self._prefix = f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}{NETWORK}"

    def pool_id(self, scale_set: str) -> str:
        return f"{self._prefix}/loadBalancers/{load_balancer_name(scale_set)}/inboundNatPools/{NAT_POOL}"

    def ensure(self, scale_set: str, tags: dict[str, str]) -> str | None:
        """The NAT pool's id once the load balancer exists; else start what is missing and answer None."""
        ip = self._get(self._network.public_ip_addresses, public_ip_name(scale_set))
        if ip is None:
            self._network.public_ip_addresses.begin_create_or_update(self._rg, public_ip_name(scale_set), {
                "location": self._location, "tags": tags, "sku": {"name": "Standard"},
                "properties": {"publicIPAllocationMethod": "Static"}}, polling=False)
            return None
        if _state(ip) != "succeeded":
            return None
        lb = self._get(self._network.load_balancers, load_balancer_name(scale_set))
        if lb is None:
            self._network.load_balancers.begin_create_or_update(
                self._rg, load_balancer_name(scale_set), self._model(scale_set, ip["id"], tags), polling=False)
            return None
        return self.pool_id(scale_set) if _state(lb) == "succeeded" else None

    def _model(self, scale_set: str, public_ip_id: str, tags: dict[str, str]) -> dict[str, Any]:
        lb_id = f"{self._prefix}/loadBalancers/{load_balancer_name(scale_set)}"
        return {"location": self._location, "tags": tags, "sku": {"name": "Standard"}, "properties": {
            "frontendIPConfigurations": [{"name": FRONTEND, "properties": {"publicIPAddress": {"id": public_ip_id}}}],
            "inboundNatPools": [{"name": NAT_POOL, "properties": {
                "frontendIPConfiguration": {"id": f"{lb_id}/frontendIPConfigurations/{FRONTEND}"},
                "protocol": "Tcp", "frontendPortRangeStart": PORT_START, "frontendPortRangeEnd": PORT_END,
                "backendPort": SSH_PORT}}]}}

    def endpoints(self, scale_set: str) -> dict[str, tuple[str, int]]:
        """IP configuration id (lower) -> (public address, frontend port) of each node the pool forwards to."""
        lb = self._get(self._network.load_balancers, load_balancer_name(scale_set))
        ip = self._get(self._network.public_ip_addresses, public_ip_name(scale_set))
        address = str(((ip or {}).get("properties") or {}).get("ipAddress") or "")
        if lb is None or not address:
            return {}
        found: dict[str, tuple[str, int]] = {}
        for rule in (lb.get("properties") or {}).get("inboundNatRules") or []:
            props = rule.get("properties") or {}
            target = (props.get("backendIPConfiguration") or {}).get("id")
            if target and props.get("frontendPort"):
                found[str(target).lower()] = (address, int(props["frontendPort"]))
        return found

    def delete(self, scale_set: str) -> bool:
        """Start removing the load balancer, then the public IP; True once both are gone."""
        for operations, name in ((self._network.load_balancers, load_balancer_name(scale_set)),
                                 (self._network.public_ip_addresses, public_ip_name(scale_set))):
            found = self._get(operations, name)
            if found is not None:
                if _state(found) != "deleting":
                    operations.begin_delete(self._rg, name, polling=False)
                return False
        return True

    def tagged(self, tag: str) -> set[str]:
        """Values of `tag` on the load balancers and public IPs of the resource group."""
        found: set[str] = set()
        for operations in (self._network.load_balancers, self._network.public_ip_addresses):
            for item in operations.list(self._rg):
                tags = item.get("tags") or {}
                if tag in tags:
                    found.add(tags[tag])
        return found

    def _get(self, operations: Any, name: str) -> Any:
        try:
            return operations.get(self._rg, name)
        except ResourceNotFoundError:
            return None


def _state(resource: Any) -> str:
    return str((resource.get("properties") or {}).get("provisioningState") or "").lower()
