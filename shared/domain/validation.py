"""Validation of every request the API accepts: names, bodies, defaults. Pure; owns the rules.

Structure (required fields, types, enums) is checked against the contract's own definitions in
`shared.domain.contract` (BatchAI.json) with jsonschema; the rules the swagger cannot say (one
toolkit, one scale mode, min <= max, unique ids, durations) are checked here after it. Every
failure is an `ApiError` 400 whose `target` is the field path (``properties.scaleSettings...``)
and whose message names it. Validators return the normalized request properties with the
contract's defaults applied; read-only and unknown top-level properties are dropped.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from datetime import timedelta
from functools import lru_cache
from typing import Any

import isodate
from jsonschema import Draft4Validator
from jsonschema.exceptions import ValidationError

from shared.domain import job_links, placement_options, vault_urls
from shared.domain.contract import swagger
from shared.domain.errors import ApiError, bad_request, invalid, shown
from shared.domain.vault_urls import DEFAULT_VAULT_HOSTS

# Names are ASCII and matched whole (`fullmatch`): no trailing newline, no Unicode look-alikes
# ("\u212Aws" is not "kws", though both lowercase alike).
NAME_RE = re.compile(r"[-A-Za-z0-9_]{1,64}")
# ARM's resource group rule: 1..90 of letters, digits, '_', '-', '.', '(' and ')', not ending in '.'
# (so '.' and '..' are never names); ARM allows non-ASCII letters too, this service does not.
RESOURCE_GROUP_RE = re.compile(r"[-A-Za-z0-9_.()]{0,89}[-A-Za-z0-9_()]")
SUBSCRIPTION_RE = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
DIRECTORY_ID_RE = re.compile(r"[A-Za-z0-9_]{1,64}")
DOTNET_TIMESPAN_RE = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})$")
STDOUTERR = "stdouterr"
RESOURCE_GROUP_PARAMETERS = ("resourceGroupName", "resourceGroup")

# Bounds. A cluster is one scale set, and a uniform scale set holds at most 1,000 instances.
MAX_NODES = 1000
MAX_PROCESSES_PER_NODE = 256  # processCount / workerCount / parameterServerCount per node of the job
MAX_DATA_DISKS = 64  # Azure's most data disks on one VM
MAX_DISK_GB = 32767  # Azure's largest managed disk

TOOLKITS: dict[str, str] = {
    "cntkSettings": "cntk",
    "pyTorchSettings": "pytorch",
    "tensorFlowSettings": "tensorflow",
    "caffeSettings": "caffe",
    "caffe2Settings": "caffe2",
    "chainerSettings": "chainer",
    "customToolkitSettings": "custom",
    "customMpiSettings": "mpi",
    "horovodSettings": "horovod",
}

DEFAULT_IMAGE = {"publisher": "Canonical", "offer": "UbuntuServer", "sku": "16.04-LTS", "version": "latest"}
DEFAULT_WALL_CLOCK = "P7D"


def check_name(parameter: str, value: str) -> None:
    """Names: 1..64 ASCII letters, digits, '-' or '_'; resource groups: ARM's rule (RESOURCE_GROUP_RE)."""
    if parameter in RESOURCE_GROUP_PARAMETERS:
        ok = isinstance(value, str) and RESOURCE_GROUP_RE.fullmatch(value) is not None
        rule = "1 to 90 characters: letters, digits, '-', '_', '.', '(' or ')', not ending in '.'"
    else:
        ok = isinstance(value, str) and NAME_RE.fullmatch(value) is not None
        rule = "1 to 64 characters: letters, digits, '-' or '_'"
    if not ok:
        raise bad_request(f"The parameter '{parameter}' has an invalid value '{shown(str(value))}': it must be "
                          f"{rule}.", parameter, code="InvalidParameter")


def check_subscription(value: str) -> None:
    """A subscription id is a GUID (ARM answers 400 InvalidSubscriptionId otherwise)."""
    if not isinstance(value, str) or SUBSCRIPTION_RE.fullmatch(value) is None:
        raise bad_request(f"The provided subscription identifier '{shown(str(value))}' is malformed or invalid.",
                          "subscriptionId", code="InvalidSubscriptionId")


def field_path(parts: Any) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


@lru_cache(maxsize=1)
def _definitions() -> dict[str, Any]:
    """The swagger's definitions, each one with properties typed as an object (the swagger leaves the
    type out, so a string where an object belongs would pass the schema and break the rules after it)."""
    defs = copy.deepcopy(swagger()["definitions"])
    for definition in defs.values():
        if "properties" in definition:
            definition.setdefault("type", "object")
    return defs


@lru_cache(maxsize=32)
def _validator(definition: str) -> Draft4Validator:
    return Draft4Validator({"$ref": f"#/definitions/{definition}", "definitions": _definitions()})


def _describe(error: ValidationError) -> ApiError:
    path = list(error.absolute_path)
    if error.validator == "required":
        missing = [p for p in error.validator_value if isinstance(error.instance, dict) and p not in error.instance]
        target = field_path([*path, missing[0] if missing else "?"])
        return bad_request(f"The field '{target}' is required.", target, code="MissingRequiredProperty")
    target = field_path(path) or "body"
    if error.validator == "enum":
        allowed = ", ".join(map(str, error.validator_value))
        return invalid(target, f"'{error.instance}' is not one of: {allowed}.")
    if error.validator == "type":
        return invalid(target, f"expected {error.validator_value}, got {type(error.instance).__name__}.")
    return invalid(target, error.message)


def check_schema(body: Any, definition: str) -> None:
    errors = sorted(_validator(definition).iter_errors(body), key=lambda e: (len(e.absolute_path), str(e.path)))
    if errors:
        first = _describe(errors[0])
        first.details = [_describe(e).body()["error"] for e in errors[1:10]]
        raise first


def _properties(body: Any, definition: str, base: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.", "body")
    props = body.get("properties")
    if props is None:
        props = {}
    if not isinstance(props, dict):
        raise invalid("properties", "expected object.")
    known = swagger()["definitions"][base]["properties"]
    props = {k: copy.deepcopy(v) for k, v in props.items() if k in known and v is not None}
    check_schema({"properties": props}, definition)
    return props


def workspace_create(body: Any) -> tuple[str, dict[str, str]]:
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.", "body")
    check_schema(body, "WorkspaceCreateParameters")
    if not body["location"].strip():
        raise invalid("location", "must not be empty.")
    return body["location"], dict(body.get("tags") or {})


def workspace_update(body: Any) -> dict[str, str] | None:
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.", "body")
    check_schema(body, "WorkspaceUpdateParameters")
    return None if body.get("tags") is None else dict(body["tags"])


def experiment_create(body: Any) -> dict[str, Any]:
    if body is not None and not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.", "body")
    return {}


def _count(value: int, path: str, low: int, high: int = MAX_NODES) -> int:
    if not low <= value <= high:
        raise invalid(path, f"must be from {low} to {high}, got {value}.")
    return value


def _scale_settings(scale: dict[str, Any], path: str) -> dict[str, Any]:
    manual, auto = scale.get("manual"), scale.get("autoScale")
    if manual is not None and auto is not None:
        raise invalid(path, "specify either 'manual' or 'autoScale', not both.")
    if manual is None and auto is None:
        raise invalid(path, "specify one of 'manual' or 'autoScale'.")
    if manual is not None:
        target = _count(manual.get("targetNodeCount", 0), f"{path}.manual.targetNodeCount", 0)
        return {"manual": {"targetNodeCount": target,
                           "nodeDeallocationOption": manual.get("nodeDeallocationOption") or "requeue"}}
    lo = _count(auto["minimumNodeCount"], f"{path}.autoScale.minimumNodeCount", 0)
    hi = _count(auto["maximumNodeCount"], f"{path}.autoScale.maximumNodeCount", 1)
    initial = auto.get("initialNodeCount", 0)
    if lo > hi:
        raise invalid(f"{path}.autoScale.minimumNodeCount",
                      f"minimumNodeCount ({lo}) must not exceed maximumNodeCount ({hi}).")
    if initial is None:
        initial = 0
    if not 0 <= initial <= hi:
        raise invalid(f"{path}.autoScale.initialNodeCount", f"must be between 0 and maximumNodeCount ({hi}).")
    return {"autoScale": {"minimumNodeCount": lo, "maximumNodeCount": hi, "initialNodeCount": initial}}


def _relative_path(value: str, path: str) -> None:
    if not value or value.startswith("/") or ".." in value.split("/"):
        raise invalid(path, "must be a relative path without '..'.")


def _mount_volumes(volumes: dict[str, Any], path: str) -> None:
    for kind in ("azureFileShares", "azureBlobFileSystems", "fileServers", "unmanagedFileSystems"):
        for i, volume in enumerate(volumes.get(kind) or []):
            _relative_path(volume.get("relativeMountPath", ""), f"{path}.{kind}[{i}].relativeMountPath")
            if kind == "azureFileShares":
                volume.setdefault("fileMode", "0777")
                volume.setdefault("directoryMode", "0777")


def _secrets(secrets: list[dict[str, Any]], path: str) -> None:
    for i, secret in enumerate(secrets):
        if (secret.get("value") is None) == (secret.get("valueSecretReference") is None):
            raise invalid(f"{path}[{i}]", "give exactly one of 'value' or 'valueSecretReference'.")


def cluster_create(body: Any, vault_hosts: Sequence[str] = DEFAULT_VAULT_HOSTS) -> dict[str, Any]:
    options = placement_options.cluster_options(body)
    props = _properties(body, "ClusterCreateParameters", "ClusterBaseProperties")
    props.update(options)
    vault_urls.secret_references(props, "properties", vault_hosts)
    props.setdefault("vmPriority", "dedicated")
    if not props["vmSize"].strip():
        raise invalid("properties.vmSize", "must not be empty.")
    scale = props.get("scaleSettings", {"manual": {"targetNodeCount": 0}})
    props["scaleSettings"] = _scale_settings(scale, "properties.scaleSettings")
    vm = props.setdefault("virtualMachineConfiguration", {})
    vm.setdefault("imageReference", dict(DEFAULT_IMAGE))
    setup = props.get("nodeSetup") or {}
    if setup.get("mountVolumes"):
        _mount_volumes(setup["mountVolumes"], "properties.nodeSetup.mountVolumes")
    if setup.get("setupTask"):
        _secrets(setup["setupTask"].get("secrets") or [], "properties.nodeSetup.setupTask.secrets")
    return props


def cluster_update(body: Any) -> dict[str, Any] | None:
    """The new scaleSettings of a PATCH, or None when it changes nothing."""
    props = _properties(body, "ClusterUpdateParameters", "ClusterUpdateProperties")
    scale = props.get("scaleSettings")
    return None if scale is None else _scale_settings(scale, "properties.scaleSettings")


def fileserver_create(body: Any) -> dict[str, Any]:
    props = _properties(body, "FileServerCreateParameters", "FileServerBaseProperties")
    disks = props["dataDisks"]
    disks.setdefault("cachingType", "none")
    _count(disks["diskCount"], "properties.dataDisks.diskCount", 1, MAX_DATA_DISKS)
    _count(disks["diskSizeInGB"], "properties.dataDisks.diskSizeInGB", 1, MAX_DISK_GB)
    return props


def parse_duration(value: str) -> timedelta:
    """ISO 8601 (``P7D``, ``PT1H30M``) or .NET (``7.00:00:00``) durations."""
    m = DOTNET_TIMESPAN_RE.match(value)
    if m:
        days, hours, minutes, seconds = (int(g or 0) for g in m.groups())
        return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    parsed = isodate.parse_duration(value)
    if not isinstance(parsed, timedelta):
        raise ValueError("years and months are not allowed")
    return parsed


def _directory_ids(items: list[dict[str, Any]], path: str) -> None:
    seen: set[str] = set()
    for i, item in enumerate(items):
        ident = item["id"]
        if not DIRECTORY_ID_RE.fullmatch(ident):
            raise invalid(f"{path}[{i}].id", "must be 1 to 64 letters, digits or '_'.")
        if ident.lower() in seen or ident.lower() == STDOUTERR:
            raise invalid(f"{path}[{i}].id", f"'{ident}' is reserved or used twice.")
        seen.add(ident.lower())


def _process_counts(props: dict[str, Any], node_count: int) -> None:
    """processCount (and TensorFlow's worker and parameter server counts) within what the nodes can run."""
    high = node_count * MAX_PROCESSES_PER_NODE
    for key in TOOLKITS:
        settings = props.get(key) or {}
        for field, low in (("processCount", 1), ("workerCount", 1), ("parameterServerCount", 0)):
            if settings.get(field) is not None:
                _count(settings[field], f"properties.{key}.{field}", low, high)


def job_create(body: Any, vault_hosts: Sequence[str] = DEFAULT_VAULT_HOSTS) -> dict[str, Any]:
    """Normalized job properties (nodeCount 1, schedulingPriority normal, maxWallClockTime P7D by default)."""
    if isinstance(body, dict) and isinstance(body.get("properties"), dict):
        body = {**body, "properties": {**body["properties"]}}
        body["properties"].setdefault("nodeCount", 1)
        if body["properties"]["nodeCount"] is None:
            body["properties"]["nodeCount"] = 1
    links = job_links.validate(body)  # array, dependsOn: additions beyond 2018-05-01
    props = _properties(body, "JobCreateParameters", "JobBaseProperties")
    props.update(placement_options.job_options(body))
    props.update(links)
    props.setdefault("schedulingPriority", "normal")
    _count(props["nodeCount"], "properties.nodeCount", 1)
    vault_urls.secret_references(props, "properties", vault_hosts)
    toolkits = [k for k in TOOLKITS if k in props]
    if len(toolkits) != 1:
        found = ", ".join(toolkits) or "none"
        raise invalid("properties", f"exactly one toolkit settings is required ({', '.join(TOOLKITS)}); "
                                    f"found: {found}.")
    cntk = props.get("cntkSettings")
    if cntk is not None and cntk.get("languageType", "Python").lower() not in ("python", "brainscript"):
        raise invalid("properties.cntkSettings.languageType", "must be 'Python' or 'BrainScript'.")
    if not props["stdOutErrPathPrefix"].strip():
        raise invalid("properties.stdOutErrPathPrefix", "must not be empty.")
    if not props["cluster"]["id"].strip():
        raise invalid("properties.cluster.id", "must not be empty.")
    _directory_ids(props.get("inputDirectories") or [], "properties.inputDirectories")
    _directory_ids(props.get("outputDirectories") or [], "properties.outputDirectories")
    _process_counts(props, props["nodeCount"])
    _secrets(props.get("secrets") or [], "properties.secrets")
    if props.get("mountVolumes"):
        _mount_volumes(props["mountVolumes"], "properties.mountVolumes")
    constraints = props.setdefault("constraints", {})
    wall = constraints.get("maxWallClockTime") or DEFAULT_WALL_CLOCK
    try:
        duration = parse_duration(wall)
    except (ValueError, isodate.ISO8601Error) as e:
        raise invalid("properties.constraints.maxWallClockTime", f"'{wall}' is not a duration ({e}).") from e
    if duration <= timedelta(0):
        raise invalid("properties.constraints.maxWallClockTime", "must be positive.")
    constraints["maxWallClockTime"] = isodate.duration_isoformat(duration)
    return props


def tool_type(props: dict[str, Any]) -> str:
    return next(tool for key, tool in TOOLKITS.items() if key in props)


def job_fits_cluster(node_count: int, cluster_props: dict[str, Any], ceiling: int = MAX_NODES,
                     why: str = "") -> None:
    """A job may not need more nodes than its cluster can ever have: an autoscale cluster's
    maximumNodeCount, and `ceiling` (what the quota lets any cluster of its VM size have; `why` says so)."""
    auto = (cluster_props.get("scaleSettings") or {}).get("autoScale")
    if auto is not None and node_count > auto["maximumNodeCount"]:
        raise invalid("properties.nodeCount",
                      f"the job needs {node_count} nodes but the cluster's autoScale maximumNodeCount is "
                      f"{auto['maximumNodeCount']}.")
    if node_count > ceiling:
        raise invalid("properties.nodeCount", f"the job needs {node_count} nodes but the cluster can never have "
                                              f"more than {ceiling}{': ' + why if why else ''}.")


def int_parameter(name: str, value: str | None, default: int, low: int, high: int) -> int:
    """A query parameter that must be an integer in [low, high]; `default` when absent."""
    if value is None or value == "":
        return default
    n = int(value) if re.fullmatch(r"-?[0-9]{1,10}", value) else low - 1
    if not low <= n <= high:
        raise bad_request(f"The parameter '{name}' must be an integer from {low} to {high}, got '{value}'.",
                          name, code="InvalidParameter")
    return n


def max_results(value: str | None) -> int:
    return int_parameter("maxresults", value, 1000, 1, 1000)


def check_arm_path(path: str) -> None:
    """The ids in a request path, before anything reads storage: the subscription is a GUID, the
    resource group follows ARM's rule, and no segment holds a control or non-ASCII character."""
    segments = path.split("/")
    for i, segment in enumerate(segments):
        if not segment.isascii() or not segment.isprintable():
            raise bad_request(f"The request path segment '{shown(segment)}' holds a character that no name may "
                              f"hold.", "path", code="InvalidParameter")
        following = segments[i + 1] if i + 1 < len(segments) else None
        if following is None:
            continue
        if segment.lower() == "subscriptions":
            check_subscription(following)
        elif segment.lower() == "resourcegroups":
            check_name("resourceGroupName", following)
