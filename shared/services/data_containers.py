"""The blob containers of the data account a workspace registered: where its batch-scoring runs may
read inputs and write outputs, and nowhere else. The only writer of the table `datacontainers`.

An addition beyond 2018-05-01: the optional workspace property ``properties.dataContainers``, a list
of container names in the data account (`Settings.data_connection`), set by a workspace PUT or
PATCH; 2018-05-01 clients neither send nor need it, and a PUT without it keeps the list. A container
belongs to one workspace at a time: a claim row ("claim" / container name -> the workspace's key)
is taken before the workspace lists it, and a container is registered for a workspace only while
both agree. A claim whose workspace no longer lists the container (or is gone) may be taken over.
The service's own containers (and any name it could use for itself) can never be registered.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

from shared import ports
from shared.adapters import storage
from shared.config import Settings
from shared.domain.errors import ApiError, conflict, invalid
from shared.domain.keys import WorkspaceRef
from shared.ports.contract import Table
from shared.ports.rows import Contended, Insert, Row, StaleEtag, Write, delete, read_modify_write, replace
from shared.services.api_common import deleting, store

PARTITION = "claim"
FIELD = "dataContainers"
MAX_CONTAINERS = 100
CONTAINER_RE = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")  # Azure's container name rule
# Names the service uses or could use for itself in an account it shares with users (the process
# topology has one account): its containers, scoring work containers, the Functions host's and
# deployment's containers.
RESERVED_PREFIXES = ("batchai", storage.SCORING_WORK_PREFIX, "azure-webjobs", "scm-", "deploymentpackage",
                     "function-releases")
CLAIM_ATTEMPTS = 5


def requested(body: Any) -> list[str] | None:
    """The dataContainers a workspace PUT/PATCH body asks for (None: the body does not say). Raises 400."""
    props = body.get("properties") if isinstance(body, dict) else None
    if not isinstance(props, dict) or props.get(FIELD) is None:
        return None
    names = props[FIELD]
    path = f"properties.{FIELD}"
    if not isinstance(names, list) or len(names) > MAX_CONTAINERS:
        raise invalid(path, f"expected a list of at most {MAX_CONTAINERS} blob container names.")
    out: list[str] = []
    for i, name in enumerate(names):
        if not isinstance(name, str) or CONTAINER_RE.fullmatch(name) is None:
            raise invalid(f"{path}[{i}]", "must be a blob container name: 3 to 63 lower-case letters, digits and "
                                          "single hyphens, starting and ending with a letter or digit.")
        if name.startswith(RESERVED_PREFIXES):
            raise invalid(f"{path}[{i}]", f"'{name}' is a name the service keeps for itself "
                                          f"(prefixes: {', '.join(RESERVED_PREFIXES)}).")
        if name not in out:
            out.append(name)
    return out


def listed(data: dict[str, Any]) -> list[str]:
    """The containers a workspace document lists."""
    return list((data.get("properties") or {}).get(FIELD) or [])


def _claims(settings: Settings) -> Table:
    return ports.of(settings.storage_connection_string).table(storage.T_DATA_CONTAINERS)


def _holder_lists(settings: Settings, holder: str, name: str) -> bool:
    sub, rg, ws = holder.split("|")
    doc = store(settings, storage.T_WORKSPACES).get(f"{sub}|{rg}", ws)
    return doc is not None and not deleting(doc) and name in listed(doc.data)


def _in_use(name: str) -> ApiError:
    return conflict(f"The blob container '{name}' is registered by another workspace.", code="DataContainerInUse")


def claim(settings: Settings, ws: WorkspaceRef, names: list[str]) -> None:
    """Take the claim of each container for `ws` (idempotent); 409 DataContainerInUse for one another
    workspace holds."""
    table, mine = _claims(settings), ws.child_pk
    for name in names:

        def take(row: Row | None, name: str = name) -> tuple[Write | None, None]:
            if row is None:  # a race lost makes the write stale: the winner's claim is looked at next
                return Insert(PARTITION, name, {"workspace": mine}), None
            holder = str(row.get("workspace") or "")
            if holder == mine:
                return None, None
            if _holder_lists(settings, holder, name):
                raise _in_use(name)
            return replace(row, {**row.fields, "workspace": mine}), None

        try:
            read_modify_write(table, PARTITION, name, take, CLAIM_ATTEMPTS)
        except Contended:
            raise _in_use(name) from None


def release(settings: Settings, ws: WorkspaceRef, names: list[str]) -> None:
    """Give up the claims `ws` holds on these containers (those another workspace took stay)."""
    table = _claims(settings)
    for name in names:
        row = table.get(PARTITION, name)
        if row is not None and row.get("workspace") == ws.child_pk:
            with contextlib.suppress(StaleEtag):  # changed or gone: no longer ours to give up
                table.write(delete(row))


def registered(settings: Settings, ws: WorkspaceRef, name: str) -> bool:
    """Whether `name` is a data container of `ws` now: the workspace lists it and holds its claim."""
    row = _claims(settings).get(PARTITION, name)
    return row is not None and row.get("workspace") == ws.child_pk and _holder_lists(settings, ws.child_pk, name)


def unregistered(settings: Settings, ws: WorkspaceRef, names: list[str]) -> list[str]:
    """Those of `names` that are not data containers of `ws` now."""
    return [n for n in dict.fromkeys(names) if not registered(settings, ws, n)]


def not_registered(workspace: str, names: list[str]) -> ApiError:
    return ApiError(403, "DataContainerNotRegistered", (
        f"The blob container(s) {', '.join(repr(n) for n in names)} are not data containers of workspace "
        f"'{workspace}': register them in the workspace's properties.{FIELD}."))
