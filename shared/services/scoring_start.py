"""The start of a batch-scoring run: one manifest blob version in the trigger container of the data
account becomes one run document (insert-if-absent: a redelivery finds the run its first delivery
recorded), then `scoring.advance` takes it on.

A manifest acts for whoever uploaded it: its blob metadata ``authorization`` holds the submitter's
``Bearer <token>``, validated as the API validates tokens, and that principal must hold every action
a run takes (`RUN_ACTIONS`) on the workspace its path names. The path decides the workspace, never
the body. Before the manifest is parsed, a refusal (no or bad token, missing role) is recorded as a
failed run with ARM's code and nothing of the manifest kept; so is a manifest that cannot run
(invalid, too large, unknown workspace, containers the workspace did not register). Secret values
in its job templates are sealed before the run document is written.

A blob whose path names no workspace (not `<GUID>/<resource group>/<workspace>/<name>.json`) has
nowhere to be recorded: it is refused in the host's log and left alone.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime
from typing import Any

from shared.adapters import scoring_blobs, secret_box, storage
from shared.adapters.resource_store import StaleEtag
from shared.config import Settings
from shared.decisions import scoring as decide
from shared.domain import resources
from shared.domain import scoring as sc
from shared.domain.errors import ApiError
from shared.domain.keys import PROVIDER, RunRef
from shared.ports.rows import Upsert
from shared.services import data_containers
from shared.services.api_common import deleting, store
from shared.services.scoring import ACTIVE, advance, move, runs_store

log = logging.getLogger("batchai.scoring")

AUTHORIZATION_METADATA = "authorization"
JOBS = f"{PROVIDER}/workspaces/experiments/jobs"
# A run creates jobs in the workspace, reads their state and outputs, and terminates them when it fails.
RUN_ACTIONS = (f"{JOBS}/write", f"{JOBS}/read", f"{JOBS}/terminate/action")


def authorization_of(metadata: dict[str, str] | None) -> str | None:
    """The ``authorization`` blob metadata (metadata names are case-insensitive)."""
    return next((v for k, v in (metadata or {}).items() if k.lower() == AUTHORIZATION_METADATA), None)


def _new_run(ref: RunRef, path: sc.ManifestPath, etag: str, manifest: dict[str, Any] | None,
             principal: dict[str, str] | None, now: datetime, error: ApiError | None) -> dict[str, Any]:
    t = resources.iso(now)
    props: dict[str, Any] = {
        "state": sc.RunState.PREPARING.value, "stateTransitionTime": t, "creationTime": t,
        "manifest": {"container": storage.C_TRIGGERS, "blob": path.blob, "etag": etag},
        "progress": decide.progress([]), "errors": []}
    if principal is not None:
        props["submittedBy"] = principal
    internal: dict[str, Any] = {"history": [], "chunks": [], "manifest": manifest}
    if manifest is not None:
        m = sc.Manifest.from_dict(manifest)
        props.update(cluster={"id": m.cluster_arm_id}, experiment=m.experiment,
                     input={"container": m.input_container, "prefix": m.input_prefix},
                     output={"container": m.output_container, "prefix": m.output_prefix},
                     itemsPerJob=m.items_per_job, errorThreshold=m.threshold.to_dict(),
                     maxRetries=m.max_retries, hasFinalJob=m.final_job is not None)
    doc = {"id": ref.arm_id, "name": ref.name, "type": sc.T_RUN, "properties": props, "internal": internal}
    if error is not None:
        move(doc, sc.RunState.FAILED, error.message, now, code=error.code)
    return doc


def _admit(settings: Settings, path: sc.ManifestPath, raw: bytes,
           authorization: str | None) -> tuple[sc.Manifest | None, dict[str, str] | None, ApiError | None]:
    """(manifest, who submitted it, refusal): who may start this run, and whether it can run.
    Transient failures (the token issuer unreachable, storage) raise."""
    from shared.services import authorization as authz

    ws = path.workspace_ref
    try:
        principal = authz.authenticate(settings, authorization)
        for action in RUN_ACTIONS:
            authz.require(settings, principal, action, ws.arm_id)
    except ApiError as e:
        if e.status >= 500:
            raise
        return None, None, ApiError(e.status, e.code, f"The manifest's submitter was refused: {e.message}")
    who = {"objectId": principal.object_id, "name": principal.name}
    account, key = scoring_blobs.account(settings.data_connection)
    try:
        manifest = sc.parse_manifest(raw, path, account, key, settings.key_vault_hosts)
    except sc.ManifestError as e:
        code = "ManifestTooLarge" if len(raw) > sc.MAX_MANIFEST_BYTES else "InvalidManifest"
        return None, who, ApiError(400, code, str(e))
    wdoc = store(settings, storage.T_WORKSPACES).get(ws.pk, ws.workspace.lower())
    if wdoc is None or deleting(wdoc):
        return manifest, who, ApiError(404, "WorkspaceNotFound", f"The workspace '{ws.workspace}' was not found in "
                                                                 f"resource group '{ws.resource_group}'.")
    unregistered = data_containers.unregistered(settings, ws, [manifest.input_container, manifest.output_container])
    if unregistered:
        return manifest, who, data_containers.not_registered(ws.workspace, unregistered)
    return manifest, who, None


def start_from_blob(settings: Settings, blob_name: str, etag: str, raw: bytes, now: datetime,
                    authorization: str | None) -> RunRef | None:
    """The run of one manifest blob version, recorded once and advanced once (None: the path names no
    workspace). A manifest that may not or cannot run is recorded as a failed run with the reason."""
    try:
        path = sc.ManifestPath.parse(blob_name)
    except sc.ManifestPathError as e:
        log.warning("Refused blob %s/%s: %s", storage.C_TRIGGERS, blob_name[:200], e)
        return None
    ws = path.workspace_ref
    ref = RunRef(ws, sc.run_id(blob_name, etag))
    runs = runs_store(settings)
    if runs.get(ws.child_pk, ref.name) is None:
        manifest, who, error = _admit(settings, path, raw, authorization)
        kept = secret_box.seal_secrets(settings, manifest.to_dict()) if manifest is not None else None
        if error is None:
            runs.table.write(Upsert(ACTIVE, ref.index_row, {}))
        with contextlib.suppress(StaleEtag):  # another delivery of the same version recorded it first
            runs.insert(ws.child_pk, ref.name, _new_run(ref, path, etag, kept, who, now, error))
    advance(settings, ref, now)
    return ref
