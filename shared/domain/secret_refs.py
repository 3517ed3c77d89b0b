"""Where secrets sit in what a node gets (a job's properties, a cluster's node view), and Key Vault
references resolved into values.

A slot is an object holding a secret value field and its Key Vault reference field
(``{"secretUrl", "sourceVault": {"id"}}``): job and setup task ``secrets[]`` (value /
valueSecretReference), the registry's ``credentials`` (password / passwordSecretReference) and
each Azure Files or blob mount's ``credentials`` (accountKey / accountKeySecretReference).
Resolving puts the secret's value in the value field and drops the reference. A reference the
service could not resolve for a node carries ``resolutionError`` (the node then fails the task
with that reason instead of running without its secret).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

RESOLUTION_ERROR = "resolutionError"


@dataclass(frozen=True)
class Slot:
    holder: dict[str, Any]
    value_key: str
    reference_key: str
    where: str  # a JSON path, for messages

    @property
    def reference(self) -> dict[str, Any] | None:
        """The Key Vault reference, when the value is not given."""
        ref = self.holder.get(self.reference_key)
        return ref if self.holder.get(self.value_key) is None and isinstance(ref, dict) else None

    @property
    def secret_url(self) -> str:
        return str((self.reference or {}).get("secretUrl") or "")


class SecretUnresolved(Exception):
    def __init__(self, slot: Slot, reason: str) -> None:
        super().__init__(f"{slot.where}: Key Vault secret {slot.secret_url or '(no secretUrl)'} could not be read: "
                         f"{reason}")
        self.slot = slot


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def slots(doc: dict[str, Any]) -> Iterator[Slot]:
    """Every secret slot of a job's properties or of a cluster's node view."""
    setup_task = _dict(_dict(doc.get("nodeSetup")).get("setupTask"))
    for path, secrets in (("secrets", doc.get("secrets")), ("nodeSetup.setupTask.secrets", setup_task.get("secrets"))):
        for i, secret in enumerate(_list(secrets)):
            if isinstance(secret, dict):
                yield Slot(secret, "value", "valueSecretReference", f"{path}[{i}]")
    registry = _dict(_dict(doc.get("containerSettings")).get("imageSourceRegistry"))
    if isinstance(registry.get("credentials"), dict):
        yield Slot(registry["credentials"], "password", "passwordSecretReference",
                   "containerSettings.imageSourceRegistry.credentials")
    for path, volumes in (("mountVolumes", doc.get("mountVolumes")),
                          ("nodeSetup.mountVolumes", _dict(doc.get("nodeSetup")).get("mountVolumes"))):
        for kind in ("azureFileShares", "azureBlobFileSystems"):
            for i, volume in enumerate(_list(_dict(volumes).get(kind))):
                if isinstance(volume, dict) and isinstance(volume.get("credentials"), dict):
                    yield Slot(volume["credentials"], "accountKey", "accountKeySecretReference",
                               f"{path}.{kind}[{i}].credentials")


def references(doc: dict[str, Any]) -> list[Slot]:
    return [slot for slot in slots(doc) if slot.reference is not None]


def resolve(doc: dict[str, Any], read: Callable[[Slot], str]) -> dict[str, Any]:
    """A copy of `doc` with every Key Vault reference replaced by its value, as `read` gives it.
    `read` raises SecretUnresolved for a secret it cannot read."""
    resolved = copy.deepcopy(doc)
    for slot in references(resolved):
        reason = (slot.reference or {}).get(RESOLUTION_ERROR)
        if reason:
            raise SecretUnresolved(slot, str(reason))
        value = read(slot)
        slot.holder[slot.value_key] = value
        del slot.holder[slot.reference_key]
    return resolved


def mark_unresolved(slot: Slot, reason: str) -> None:
    """Record on the reference why it could not be resolved (for the node to report)."""
    reference = slot.reference
    if reference is not None:
        reference[RESOLUTION_ERROR] = reason
