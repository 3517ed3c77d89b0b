"""Batch AI CLI job, cluster and file server files (`-f job.json`, `-f cluster.json`, `-f nfs.json`): read,
complete, validate, deserialize.

The files are `{"$schema": ..., "properties": {...}}` as the Batch AI command-line tool used them (a bare
properties object is accepted too). Storage placeholders `<AZURE_BATCHAI_STORAGE_ACCOUNT>` and
`<AZURE_BATCHAI_STORAGE_KEY>` are replaced, and missing account names and keys of Azure File shares and
blob containers are filled in, as that tool did; then the file is checked against its schema
(`schemas/`) and deserialized into the SDK's parameter model.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from azure.mgmt.batchai import models
from jsonschema.exceptions import ValidationError
from msrest import Deserializer
from msrest.exceptions import DeserializationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from shared.cli.context import CliError

SCHEMA_DIR = Path(__file__).parent / "schemas"
ARM_EXPRESSION_SCHEMA = "https://schema.management.azure.com/schemas/2015-01-01/deploymentTemplate.json"
ACCOUNT_PLACEHOLDER = "<AZURE_BATCHAI_STORAGE_ACCOUNT>"
KEY_PLACEHOLDER = "<AZURE_BATCHAI_STORAGE_KEY>"
MAX_REPORTED_ERRORS = 8
#: A job file's properties beyond 2018-05-01 (the service's additions), sent beside the SDK's model.
JOB_ADDITIONS = ("array", "dependsOn")


@dataclass(frozen=True)
class StorageAccount:
    """What fills the storage placeholders and missing credentials of mount volumes."""

    name: str | None = None
    key: str | None = None


def storage_account_from_connection_string(conn: str | None) -> StorageAccount:
    if not conn:
        return StorageAccount()
    parts = dict(p.split("=", 1) for p in conn.split(";") if "=" in p)
    return StorageAccount(parts.get("AccountName"), parts.get("AccountKey"))


@cache
def _validator(kind: str) -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMA_DIR / f"{kind}.json").read_text())
    # ARM template expressions ("[parameters('x')]") are strings; the remote schema is not fetched.
    expression = Resource.from_contents(
        {"definitions": {"expression": {"type": "string", "pattern": r"^\[[\s\S]*\]$"}}},
        default_specification=DRAFT4)
    registry = Registry().with_resource(ARM_EXPRESSION_SCHEMA, expression)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft4Validator)
    return cls(schema, registry=registry)


def known_properties(kind: str) -> list[str]:
    schema = _validator(kind).schema
    return list(schema["properties"]["properties"]["properties"])


def read_json_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as e:
        raise CliError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise CliError(f"{path} is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    if not isinstance(data, dict):
        raise CliError(f"{path} must hold a JSON object, not {type(data).__name__}")
    return data


def as_document(data: dict[str, Any], kind: str, path: Path) -> dict[str, Any]:
    """`{"properties": {...}}`, whether the file wraps its properties or not; unknown names are refused."""
    if "properties" in data:
        extra = sorted(set(data) - {"$schema", "properties", "location", "tags"})
        if extra:
            raise CliError(f"{path}: unexpected top-level field(s) {', '.join(extra)}; "
                           "a Batch AI file holds \"$schema\" and \"properties\"")
        props = data["properties"]
    else:
        props = {k: v for k, v in data.items() if k != "$schema"}
    if not isinstance(props, dict):
        raise CliError(f"{path}: \"properties\" must be an object")
    known = known_properties(kind) + (list(JOB_ADDITIONS) if kind == "job" else [])
    unknown = [k for k in props if k not in known]
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, known, n=1)
            hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise CliError(f"{path}: unknown {kind} propert{'y' if len(unknown) == 1 else 'ies'} {', '.join(hints)}")
    return {"properties": dict(props)}


def _fill_storage(mount_volumes: Any, account: StorageAccount) -> None:
    if not isinstance(mount_volumes, dict):
        return
    for share in mount_volumes.get("azureFileShares") or []:
        if not isinstance(share, dict):
            continue
        if account.name:
            if isinstance(share.get("azureFileUrl"), str):
                share["azureFileUrl"] = share["azureFileUrl"].replace(ACCOUNT_PLACEHOLDER, account.name)
            if share.get("accountName") in (None, ACCOUNT_PLACEHOLDER):
                share["accountName"] = account.name
        _fill_credentials(share, account)
    for container in mount_volumes.get("azureBlobFileSystems") or []:
        if not isinstance(container, dict):
            continue
        if account.name and container.get("accountName") in (None, ACCOUNT_PLACEHOLDER):
            container["accountName"] = account.name
        _fill_credentials(container, account)


def _fill_credentials(volume: dict[str, Any], account: StorageAccount) -> None:
    credentials = volume.get("credentials")
    if credentials is None and account.key:
        volume["credentials"] = {"accountKey": account.key}
    elif isinstance(credentials, dict) and credentials.get("accountKey") == KEY_PLACEHOLDER and account.key:
        credentials["accountKey"] = account.key


def validate(doc: dict[str, Any], kind: str, path: Path) -> None:
    errors = sorted(_validator(kind).iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    if not errors:
        return
    lines = [f"{path} does not match the Batch AI {kind} file schema:"]
    for error in errors[:MAX_REPORTED_ERRORS]:
        lines.append(f"  {_explain(error)}")
    if len(errors) > MAX_REPORTED_ERRORS:
        lines.append(f"  ... and {len(errors) - MAX_REPORTED_ERRORS} more")
    raise CliError("\n".join(lines))


def _explain(error: ValidationError) -> str:
    if error.context:  # oneOf [the real shape, an ARM expression]: report why the real shape failed
        real = [e for e in error.context if e.relative_schema_path and e.relative_schema_path[0] == 0]
        if real:
            return _explain(max(real, key=lambda e: len(e.absolute_path)))
    where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    return f"{where}: {error.message}"


_deserialize = Deserializer({k: v for k, v in models.__dict__.items() if isinstance(v, type)})


def to_model(doc: dict[str, Any], model_name: str, path: Path) -> Any:
    try:
        return _deserialize(model_name, doc)
    except DeserializationError as e:
        raise CliError(f"{path}: {e}") from None


def load_job_file(path: Path, cluster_id: str | None, account: StorageAccount) -> models.JobCreateParameters:
    """The job file as JobCreateParameters; `cluster_id` (from --cluster) overrides the file's cluster."""
    return load_job_file_parts(path, cluster_id, account)[0]


def load_job_file_parts(path: Path, cluster_id: str | None,
                        account: StorageAccount) -> tuple[models.JobCreateParameters, dict[str, Any]]:
    """The job file as JobCreateParameters, and its `JOB_ADDITIONS` (which the SDK's model cannot hold)."""
    doc = as_document(read_json_file(path), "job", path)
    additions = {k: doc["properties"].pop(k) for k in JOB_ADDITIONS if k in doc["properties"]}
    props = doc["properties"]
    if cluster_id:
        props["cluster"] = {"id": cluster_id}
    if "cluster" not in props:
        raise CliError(f"{path}: no cluster: pass --cluster NAME or set properties.cluster.id")
    props.setdefault("nodeCount", 1)
    _fill_storage(props.get("mountVolumes"), account)
    validate(doc, "job", path)
    return to_model(doc, "JobCreateParameters", path), additions


def load_cluster_file(path: Path, account: StorageAccount) -> dict[str, Any]:
    """The cluster file's properties (completed and validated), for the caller to merge flags into."""
    doc = as_document(read_json_file(path), "cluster", path)
    node_setup = doc["properties"].get("nodeSetup")
    if isinstance(node_setup, dict):
        _fill_storage(node_setup.get("mountVolumes"), account)
    validate(doc, "cluster", path)
    return doc


def cluster_model(doc: dict[str, Any], path: Path | str) -> models.ClusterCreateParameters:
    return to_model(doc, "ClusterCreateParameters", Path(str(path)))


def load_file_server_file(path: Path) -> dict[str, Any]:
    """The file server file's properties (validated against the tool's `nfs` schema), for flags to merge into."""
    doc = as_document(read_json_file(path), "nfs", path)
    validate(doc, "nfs", path)
    return doc


def file_server_model(doc: dict[str, Any], path: Path | str) -> models.FileServerCreateParameters:
    return to_model(doc, "FileServerCreateParameters", Path(str(path)))
