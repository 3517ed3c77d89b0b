"""What `batchai cluster create/resize/auto-scale` flags mean in REST terms, as `az batchai` read them:
scale settings from --target/--min/--max, the OS image from --image/--custom-image, the node setup
task from --setup-task/--setup-task-output. Pure: flags in, REST JSON out, CliError (exit 2) for
flags that contradict each other.
"""

from __future__ import annotations

from typing import Any

from shared.cli.context import CliError

# The aliases `az batchai cluster create --image` knew.
IMAGE_ALIASES: dict[str, dict[str, str]] = {
    "UbuntuLTS": {"publisher": "Canonical", "offer": "UbuntuServer", "sku": "16.04-LTS"},
    "UbuntuDSVM": {"publisher": "microsoft-ads", "offer": "linux-data-science-vm-ubuntu", "sku": "linuxdsvmubuntu"},
}


def scale_settings(target: int | None, minimum: int | None, maximum: int | None,
                   deallocation: str | None = None) -> dict[str, Any] | None:
    """REST scaleSettings: manual with --target alone (or --min = --max); auto scale with --min and --max, --target
    being the initial node count. None when no flag asks for anything."""
    if target is None and minimum is None and maximum is None:
        return None
    if (minimum is None) != (maximum is None):
        raise CliError("auto scale needs both --min and --max (or neither, with --target for manual scale)",
                       exit_code=2)
    if minimum is not None and maximum is not None and minimum > maximum:
        raise CliError(f"--min {minimum} is greater than --max {maximum}", exit_code=2)
    if minimum == maximum and (minimum is None or target is None or target == minimum):
        manual: dict[str, Any] = {"targetNodeCount": target if minimum is None else minimum}
        if deallocation:
            manual["nodeDeallocationOption"] = deallocation
        return {"manual": manual}
    return {"autoScale": {"minimumNodeCount": minimum, "maximumNodeCount": maximum,
                          "initialNodeCount": target or 0}}


def image_reference(image: str | None, custom_image: str | None) -> dict[str, Any] | None:
    """REST imageReference of --image (an alias, or publisher:offer:sku:version) and --custom-image (the ARM id of
    a VM image built from that base image). None when neither is given."""
    if not image and not custom_image:
        return None
    if not image:
        raise CliError("--custom-image needs --image: the image it was built from", exit_code=2)
    if custom_image and not custom_image.startswith("/subscriptions/"):
        raise CliError(f"--custom-image {custom_image!r} is not an ARM resource id", exit_code=2)
    if ":" in image:
        parts = image.split(":")
        if len(parts) != 4 or not all(parts[:3]):
            raise CliError(f"--image {image!r}: use an alias ({', '.join(IMAGE_ALIASES)}) or "
                           "publisher:offer:sku:version (version may be empty)", exit_code=2)
        publisher, offer, sku, version = parts
        reference: dict[str, Any] = {"publisher": publisher, "offer": offer, "sku": sku}
        if version:
            reference["version"] = version
    else:
        found = [v for k, v in IMAGE_ALIASES.items() if k.lower() == image.lower()]
        if not found:
            raise CliError(f"unknown --image alias {image!r}: use {', '.join(IMAGE_ALIASES)} or "
                           "publisher:offer:sku:version", exit_code=2)
        reference = dict(found[0])
    if custom_image:
        reference["virtualMachineImageId"] = custom_image
    return reference


def setup_task(command: str | None, output: str | None) -> dict[str, Any] | None:
    """REST setupTask of --setup-task (run by bash on every node as it joins) writing to --setup-task-output."""
    if command is None:
        if output is not None:
            raise CliError("--setup-task-output needs --setup-task", exit_code=2)
        return None
    if not output:
        raise CliError("--setup-task needs --setup-task-output: where the task's output goes", exit_code=2)
    return {"commandLine": command, "stdOutErrPathPrefix": output, "runElevated": False}
