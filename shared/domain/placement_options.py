"""The cluster and job properties beyond 2018-05-01 that shape where jobs go (OpenAPI in
shared/domain/contract/clusters-additions.json). Pure: each is checked on its own, since the swagger
does not describe it, and kept only when the request named it, so a 2018-05-01 GET stays as it was.

- cluster ``packing``: ``whole-node`` (one job per node at a time, the default) or ``gpu-slots``;
- cluster ``nodeSource``: ``provider`` (the default) or ``bringYourOwn`` (machines their owner runs,
  joined with `batchai node join`);
- job ``gpusPerNode``: the GPUs a job takes on each of its nodes.
"""

from __future__ import annotations

from typing import Any

from shared.domain.errors import invalid, shown

PACKINGS = ("whole-node", "gpu-slots")
NODE_SOURCES = ("provider", "bringYourOwn")
BRING_YOUR_OWN = "bringYourOwn"
MAX_GPUS_PER_NODE = 64



def _given(body: Any, name: str) -> Any:
    """A property of the request body that the contract does not define (None: not given)."""
    props = body.get("properties") if isinstance(body, dict) else None
    return props.get(name) if isinstance(props, dict) else None


def _one_of(body: Any, name: str, allowed: tuple[str, ...]) -> str | None:
    value = _given(body, name)
    if value is not None and value not in allowed:
        raise invalid(f"properties.{name}", f"'{shown(str(value))}' is not one of: {', '.join(allowed)}.")
    return value


def cluster_options(body: Any) -> dict[str, str]:
    """`packing` and `nodeSource` as the request named them."""
    named = {"packing": _one_of(body, "packing", PACKINGS), "nodeSource": _one_of(body, "nodeSource", NODE_SOURCES)}
    return {k: v for k, v in named.items() if v is not None}


def job_options(body: Any) -> dict[str, int]:
    """`gpusPerNode` as the request named it."""
    gpus = _given(body, "gpusPerNode")
    if gpus is None:
        return {}
    if not isinstance(gpus, int) or isinstance(gpus, bool) or not 1 <= gpus <= MAX_GPUS_PER_NODE:
        raise invalid("properties.gpusPerNode", f"must be an integer from 1 to {MAX_GPUS_PER_NODE}, got "
                                                 f"{shown(repr(gpus))}.")
    return {"gpusPerNode": gpus}


def gpus_fit_cluster(gpus_per_node: int | None, node_gpus: int) -> None:
    """A job may not ask for more GPUs per node than its cluster's nodes have (`node_gpus`; 0: unknown)."""
    if gpus_per_node is not None and node_gpus > 0 and gpus_per_node > node_gpus:
        raise invalid("properties.gpusPerNode", f"the job asks for {gpus_per_node} GPUs per node but the "
                                                 f"cluster's nodes have {node_gpus}.")
