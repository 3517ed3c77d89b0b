"""The provider's operations (GET /providers/Microsoft.BatchAI/operations): the contract's example
list plus the operations of the resources it leaves out, in the same shape."""

from __future__ import annotations

from typing import Any

from shared.domain.contract import example

PROVIDER = "Microsoft Batch AI"

_EXTRA = [
    ("workspaces", "Batch AI Workspaces", [
        ("read", "List or get Batch AI workspaces", "Lists Batch AI workspaces or gets the properties of a Batch AI "
                                                    "workspace"),
        ("write", "Create or update Batch AI workspace", "Creates a new Batch AI workspace or updates an existing "
                                                         "Batch AI workspace"),
        ("delete", "Delete Batch AI workspace", "Deletes a Batch AI workspace"),
    ]),
    ("workspaces/experiments", "Batch AI Experiments", [
        ("read", "List or get Batch AI experiments", "Lists Batch AI experiments or gets the properties of a Batch "
                                                     "AI experiment"),
        ("write", "Create Batch AI experiment", "Creates a new Batch AI experiment"),
        ("delete", "Delete Batch AI experiment", "Deletes a Batch AI experiment and its jobs"),
    ]),
    ("jobs", "Batch AI Jobs", [
        ("listOutputFiles/action", "List Batch AI job output files",
         "Lists the output files of a Batch AI job with download links"),
    ]),
    ("locations/usages", "Batch AI Usages", [
        ("read", "List Batch AI usages", "Lists the Batch AI usages and limits of a subscription in a location"),
    ]),
    ("operations", "Batch AI Operations", [
        ("read", "List Batch AI operations", "Lists the operations of the Batch AI resource provider"),
    ]),
]


def operations() -> list[dict[str, Any]]:
    ops = list(example("ListOperation.json")["responses"]["200"]["body"]["value"])
    for resource, display, actions in _EXTRA:
        for action, operation, description in actions:
            ops.append({"name": f"Microsoft.BatchAI/{resource}/{action}",
                        "display": {"provider": PROVIDER, "resource": display, "operation": operation,
                                    "description": description},
                        "origin": "user,system"})
    return ops
