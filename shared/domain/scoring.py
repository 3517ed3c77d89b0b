"""Batch-scoring runs: the manifest (parsed and validated), the run's state machine, names derived
from the manifest blob, and the contract between the service and a scoring job. Pure.

A manifest uploaded to ``batchai-triggers/<subscription>/<resourceGroup>/<workspace>/<name>.json`` in
the data account starts a run in that workspace (the path says which; a manifest body that names
another is refused). The run id is derived from the blob's name and ETag, so one blob version is one
run however often it is delivered. Its input and output containers must be data containers the
workspace registered (`shared.services.data_containers`).

How a scoring job sees its work (only Batch AI 2018-05-01 job features are used):
- each job gets its own blob container (`work_container`, in the data account, never the service's
  own) mounted as an azureBlobFileSystem at
  ``$AZ_BATCHAI_JOB_MOUNT_ROOT/batchai-scoring``; `ITEMS_ENV` (``$AZ_BATCHAI_INPUT_ITEMS``, from an
  inputDirectories entry) names ``items.json`` there: ``{"run", "job", "chunk", "attempt", "items":
  [{"name": <input blob name>, "url": <read SAS URL of that blob>}], "resultsFile", "outputDir"}``;
- the job downloads only its own items by URL, writes output files under ``outputs/`` beside the
  items file and a ``results.json``: ``{"items": [{"name", "status": "succeeded"|"failed",
  "outputs": [<paths relative to outputs/>], "error": <text>}]}``;
- after the task the node uploads the mount's new files (the agent's blob mounts do that); the
  service copies ``outputs/*`` to the manifest's output container and prefix and reads the results.
The final job gets the same mount, with ``"kind": "final"`` and every item's status and outputs.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from shared.domain import validation
from shared.domain.errors import ApiError
from shared.domain.keys import PROVIDER, WorkspaceRef
from shared.domain.states import IllegalTransition

T_RUN = f"{PROVIDER}/batchScoringRuns"
DEFAULT_ITEMS_PER_JOB = 50
DEFAULT_MAX_RETRIES = 1  # more attempts of a chunk's failed items after the first
MAX_RETRIES_LIMIT = 5
MAX_ITEMS = 5000  # one run document holds every item's state (Table entity limits)
MAX_CHUNKS = 1000
MAX_MANIFEST_BYTES = 512 * 1024  # two job templates of the API's 256 KiB at most

ITEMS_INPUT_ID = "ITEMS"
ITEMS_ENV = f"AZ_BATCHAI_INPUT_{ITEMS_INPUT_ID}"
WORK_MOUNT = "batchai-scoring"
ITEMS_FILE = "items.json"
RESULTS_FILE = "results.json"
OUTPUTS_DIR = "outputs"
ITEMS_PATH = f"$AZ_BATCHAI_JOB_MOUNT_ROOT/{WORK_MOUNT}/{ITEMS_FILE}"

_NAME_RE = re.compile(r"[^-A-Za-z0-9_]")
_CONTAINER_RE = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")


class RunState(StrEnum):
    PREPARING = "preparing"  # recorded from the manifest; inputs not yet listed
    SCORING = "scoring"  # chunk jobs created, retried, settled
    FINALIZING = "finalizing"  # every chunk settled within the threshold; the final job runs
    SUCCEEDED = "succeeded"
    FAILED = "failed"


RUN_TRANSITIONS: dict[RunState, dict[RunState, str]] = {
    RunState.PREPARING: {
        RunState.SCORING: "inputs listed and split into chunks",
        RunState.FAILED: "bad manifest, unknown workspace, no inputs or a refused job template",
    },
    RunState.SCORING: {
        RunState.FINALIZING: "every chunk settled within the error threshold; a final job is configured",
        RunState.SUCCEEDED: "every chunk settled within the error threshold",
        RunState.FAILED: "the error threshold was exceeded, or a job could not be created",
    },
    RunState.FINALIZING: {
        RunState.SUCCEEDED: "the final job succeeded",
        RunState.FAILED: "the final job failed or could not be created",
    },
    RunState.SUCCEEDED: {},
    RunState.FAILED: {},
}
RUN_TERMINAL = frozenset({RunState.SUCCEEDED, RunState.FAILED})


def run_transition(current: str, target: str, reason: str, at: datetime) -> dict[str, Any]:
    """Check a run state move and return the history entry to keep."""
    cur, tgt = RunState(current), RunState(target)
    if tgt not in RUN_TRANSITIONS[cur]:
        raise IllegalTransition(409, "InvalidStateTransition", f"A scoring run cannot move from '{cur}' to '{tgt}'.")
    return {"from": str(cur), "to": str(tgt), "at": at.isoformat(), "reason": reason}


class ManifestError(Exception):
    """The manifest cannot start a run; the message says why (recorded on a failed run)."""


@dataclass(frozen=True)
class Threshold:
    failed_items_percent: float = 0.0  # fail the run when more than this % of items fail
    failed_jobs_percent: float = 100.0  # ... or more than this % of chunks end with a failed item

    def to_dict(self) -> dict[str, float]:
        return {"failedItemsPercent": self.failed_items_percent, "failedJobsPercent": self.failed_jobs_percent}


@dataclass(frozen=True)
class Manifest:
    workspace: WorkspaceRef
    cluster: str
    experiment: str
    input_container: str
    input_prefix: str
    output_container: str
    output_prefix: str
    items_per_job: int
    job_template: dict[str, Any]  # JobCreateParameters "properties"
    threshold: Threshold
    max_retries: int
    final_job: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        ws = self.workspace
        return {"subscriptionId": ws.subscription, "resourceGroup": ws.resource_group, "workspace": ws.workspace,
                "cluster": self.cluster, "experiment": self.experiment,
                "input": {"container": self.input_container, "prefix": self.input_prefix},
                "output": {"container": self.output_container, "prefix": self.output_prefix},
                "itemsPerJob": self.items_per_job, "jobTemplate": {"properties": self.job_template},
                "errorThreshold": self.threshold.to_dict(), "maxRetries": self.max_retries,
                "finalJob": {"properties": self.final_job} if self.final_job is not None else None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        t = d["errorThreshold"]
        return cls(WorkspaceRef(d["subscriptionId"], d["resourceGroup"], d["workspace"]), d["cluster"],
                   d["experiment"], d["input"]["container"], d["input"]["prefix"], d["output"]["container"],
                   d["output"]["prefix"], d["itemsPerJob"], d["jobTemplate"]["properties"],
                   Threshold(t["failedItemsPercent"], t["failedJobsPercent"]), d["maxRetries"],
                   (d.get("finalJob") or {}).get("properties"))

    @property
    def cluster_arm_id(self) -> str:
        return f"{self.workspace.arm_id}/clusters/{self.cluster}"


class ManifestPathError(ValueError):
    """A blob in the trigger container whose path names no workspace: no run can be recorded for it."""


@dataclass(frozen=True)
class ManifestPath:
    """Where a manifest blob sits: ``<subscription>/<resourceGroup>/<workspace>/<name>.json`` in the
    trigger container; `workspace_ref` is the workspace the run belongs to."""
    workspace_ref: WorkspaceRef
    name: str
    blob: str

    @property
    def workspace(self) -> str:
        return self.workspace_ref.workspace

    @classmethod
    def parse(cls, blob_name: str) -> ManifestPath:
        """`blob_name` relative to the trigger container (a leading container name is dropped by the
        caller). Raises ManifestPathError unless it names a valid subscription, resource group and workspace."""
        parts = blob_name.split("/")
        if len(parts) < 4 or not parts[-1]:
            raise ManifestPathError(f"'{blob_name[:200]}' is not <subscription>/<resourceGroup>/<workspace>/"
                                    "<name>.json")
        sub, rg, ws = parts[:3]
        try:
            validation.check_subscription(sub)
            validation.check_name("resourceGroupName", rg)
            validation.check_name("workspaceName", ws)
        except ApiError as e:
            raise ManifestPathError(e.message) from e
        file = "/".join(parts[3:])
        name = file[:-5] if file.lower().endswith(".json") else file
        return cls(WorkspaceRef(sub, rg, ws), name, blob_name)


def run_id(blob_name: str, etag: str) -> str:
    """A valid resource name, the same for every delivery of one blob version and new for each version."""
    file = blob_name.rsplit("/", 1)[-1]
    stem = file[:-5] if file.lower().endswith(".json") else file
    readable = _NAME_RE.sub("-", stem).strip("-")[:40] or "run"
    digest = hashlib.sha256(f"{blob_name}\n{etag.strip(chr(34))}".encode()).hexdigest()[:12]
    return f"{readable}-{digest}".lower()


def run_hash(run: str) -> str:
    return run.rsplit("-", 1)[-1]


def chunk_job_name(run: str, chunk: int, attempt: int) -> str:
    return f"{run}-c{chunk:04d}-a{attempt}"


def final_job_name(run: str) -> str:
    return f"{run}-final"


def work_container(run: str, chunk: int | None, attempt: int = 1) -> str:
    """The blob container of one job's items, results and outputs (chunk None: the final job)."""
    if chunk is None:
        return f"bsr-{run_hash(run)}-final"
    return f"bsr-{run_hash(run)}-{chunk:04d}-{attempt}"


def normalized_prefix(prefix: str) -> str:
    prefix = prefix.strip().lstrip("/")
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


def summary_blob(manifest: Manifest, run: str) -> str:
    return f"{manifest.output_prefix}{run}.summary.json"


def _obj(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ManifestError(f"'{field}' must be a JSON object.")
    return value


def _text(d: dict[str, Any], field: str, default: str | None = None) -> str:
    value = d.get(field, default)
    if not isinstance(value, str) or (default is None and not value.strip()):
        raise ManifestError(f"'{field}' is required and must be a string.")
    return value.strip()


def _container(d: dict[str, Any], field: str) -> tuple[str, str]:
    where = _obj(d.get(field), field)
    container = _text(where, "container").lower()
    if not _CONTAINER_RE.fullmatch(container):
        raise ManifestError(f"'{field}.container' is not a valid blob container name: '{container}'.")
    return container, normalized_prefix(_text(where, "prefix", ""))


def _percent(d: dict[str, Any], field: str, default: float) -> float:
    value = d.get(field, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        raise ManifestError(f"'errorThreshold.{field}' must be a number from 0 to 100.")
    return float(value)


def _properties(value: Any, field: str) -> dict[str, Any]:
    body = _obj(value, field)
    props = body.get("properties", body)
    return copy.deepcopy(_obj(props, f"{field}.properties"))


def _int(d: dict[str, Any], field: str, default: int, low: int, high: int) -> int:
    value = d.get(field, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ManifestError(f"'{field}' must be an integer from {low} to {high}.")
    return value


def parse_manifest(raw: bytes, path: ManifestPath, account: str, account_key: str | None,
                   vault_hosts: tuple[str, ...] = validation.DEFAULT_VAULT_HOSTS) -> Manifest:
    """The manifest of `raw`, checked as far as it can be without storage: size, names, numbers, and
    both job templates as the API would accept them. Its workspace is the path's: a body that names
    another subscription, resource group or workspace is refused. Raises ManifestError with the reason."""
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"The manifest is {len(raw)} bytes; the limit is {MAX_MANIFEST_BYTES} bytes.")
    try:
        d = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ManifestError(f"The manifest is not valid JSON: {e}.") from e
    d = _obj(d, "manifest")
    ws = path.workspace_ref
    where = f"{ws.subscription}/{ws.resource_group}/{ws.workspace}/"
    for field, value in (("subscriptionId", ws.subscription), ("resourceGroup", ws.resource_group),
                         ("workspace", ws.workspace)):
        named = d.get(field, value)
        if not isinstance(named, str) or named.lower() != value.lower():
            raise ManifestError(f"The manifest names {field} '{str(named)[:100]}' but sits under '{where}'; a "
                                "manifest runs in the workspace of its path.")
    try:
        for field, name in (("cluster", _text(d, "cluster")), ("experiment", _text(d, "experiment"))):
            validation.check_name(field, name)
    except ApiError as e:
        raise ManifestError(e.message) from e
    threshold_d = _obj(d.get("errorThreshold", {}), "errorThreshold")
    manifest = Manifest(
        workspace=ws, cluster=_text(d, "cluster"), experiment=_text(d, "experiment"),
        input_container=_container(d, "input")[0], input_prefix=_container(d, "input")[1],
        output_container=_container(d, "output")[0], output_prefix=_container(d, "output")[1],
        items_per_job=_int(d, "itemsPerJob", DEFAULT_ITEMS_PER_JOB, 1, MAX_ITEMS),
        job_template=_properties(d.get("jobTemplate"), "jobTemplate"),
        threshold=Threshold(_percent(threshold_d, "failedItemsPercent", 0.0),
                            _percent(threshold_d, "failedJobsPercent", 100.0)),
        max_retries=_int(d, "maxRetries", DEFAULT_MAX_RETRIES, 0, MAX_RETRIES_LIMIT),
        final_job=_properties(d["finalJob"], "finalJob") if d.get("finalJob") is not None else None)
    for field, template in (("jobTemplate", manifest.job_template), ("finalJob", manifest.final_job)):
        if template is None:
            continue
        ids = {str(i.get("id", "")).upper() for i in template.get("inputDirectories") or [] if isinstance(i, dict)}
        if ITEMS_INPUT_ID in ids:
            raise ManifestError(f"'{field}' must not define the input directory '{ITEMS_INPUT_ID}': the run sets it.")
        try:
            validation.job_create({"properties": job_properties(manifest, template, "bsr-check", account,
                                                                account_key)}, vault_hosts)
        except ApiError as e:
            raise ManifestError(f"'{field}' is not a valid job: {e.message}") from e
    return manifest


def job_properties(manifest: Manifest, template: dict[str, Any], container: str, account: str,
                   account_key: str | None) -> dict[str, Any]:
    """A template's JobCreateParameters properties for one job: the manifest's cluster, the work
    container mounted at ``$AZ_BATCHAI_JOB_MOUNT_ROOT/batchai-scoring`` and ``$AZ_BATCHAI_INPUT_ITEMS``."""
    props = copy.deepcopy(template)
    props["cluster"] = {"id": manifest.cluster_arm_id}
    volumes = props.setdefault("mountVolumes", {})
    blobs = volumes.setdefault("azureBlobFileSystems", [])
    mount: dict[str, Any] = {"accountName": account, "containerName": container, "relativeMountPath": WORK_MOUNT,
                             "credentials": {"accountKey": account_key} if account_key else {}}
    blobs.append(mount)
    props.setdefault("inputDirectories", []).append({"id": ITEMS_INPUT_ID, "path": ITEMS_PATH})
    return props


@dataclass(frozen=True)
class ItemResult:
    status: str  # succeeded | failed
    outputs: tuple[str, ...] = ()
    error: str | None = None


def parse_results(raw: bytes | None) -> dict[str, ItemResult] | None:
    """The per-item statuses a job reported (None: no usable results file). Unknown statuses are failures."""
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
        entries = doc["items"] if isinstance(doc, dict) else None
    except (ValueError, UnicodeDecodeError, KeyError):
        return None
    if not isinstance(entries, list):
        return None
    out: dict[str, ItemResult] = {}
    for e in entries:
        if not isinstance(e, dict) or not isinstance(e.get("name"), str):
            continue
        outputs = tuple(str(o).lstrip("/") for o in e.get("outputs") or [] if isinstance(o, str) and ".." not in o)
        ok = e.get("status") == "succeeded"
        out[e["name"]] = ItemResult("succeeded" if ok else "failed", outputs,
                                    None if ok else str(e.get("error") or f"reported status {e.get('status')!r}"))
    return out
