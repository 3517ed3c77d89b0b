"""Jobs at the API: create (validate, store queued, index as pending, kick), get, list, terminate,
remote login. Deletion is `removal`'s. An array job or a job with dependencies is not indexed as
pending: `job_links` starts it (its first children, or the evaluation of its dependencies).

Creation is the only write of a job document by the API; afterwards `internal` phase fields
belong to the scheduler (`job_state`, `job_control`). A retried create with the same request
returns the stored job and re-indexes it when it is still queued on its first attempt (the
pending row key is the job's identity, so re-indexing is idempotent). Terminate is asynchronous
while tasks stop: it answers with an operation that completes when the job is terminal.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from shared import ports, telemetry
from shared.adapters import sched_store, secret_box, storage
from shared.adapters.compute import vm_sizes
from shared.adapters.resource_store import Doc
from shared.config import Settings
from shared.decisions.gpu_slots import job_slots
from shared.domain import placement_options, resources, states, validation
from shared.domain.errors import bad_request, conflict, not_found
from shared.domain.keys import ClusterRef, ExperimentRef, JobRef
from shared.services import job_links, node_state, removal, usages
from shared.services.api_common import (
    Accepted,
    Page,
    Rendered,
    create_or_match,
    deleting,
    live_workspace,
    page_of,
    store,
    table_token,
    utcnow,
)
from shared.services.clusters import get_doc as cluster_doc
from shared.services.clusters import login_entries, node_rows


def _cluster_of(ref: JobRef, cluster_id: str) -> ClusterRef:
    parsed = resources.parse_cluster_id(cluster_id)
    ws = ref.experiment.workspace
    target = "properties.cluster.id"
    if parsed is None:
        raise bad_request(f"Invalid value for '{target}': '{cluster_id}' is not a Batch AI cluster resource id.",
                          target)
    sub, rg, ws_name, name = parsed
    if (sub.lower(), rg.lower(), ws_name.lower()) != (ws.subscription.lower(), ws.resource_group.lower(),
                                                      ws.workspace.lower()):
        raise bad_request(f"Invalid value for '{target}': the cluster must be in the job's workspace "
                          f"'{ws.workspace}'.", target)
    return ClusterRef(ws, name)


def create(settings: Settings, ref: JobRef, body: object, if_match: str | None = None,
           sweep: dict[str, Any] | None = None, scoring_run: str | None = None) -> Rendered:
    """`sweep`: the sweep a child job belongs to ({"name", "index", "parameters"}), kept as `internal.sweep`;
    `scoring_run`: the batch-scoring run a chunk job belongs to (its index row), kept as `internal.scoringRun`."""
    props = validation.job_create(body, settings.key_vault_hosts)
    # The workspace, experiment and cluster are read side by side; their errors come in this order.
    workspace_read = ports.beside(live_workspace, settings, ref.experiment.workspace)
    exp_read = ports.beside(store(settings, storage.T_EXPERIMENTS).get, ref.experiment.workspace.child_pk,
                               ref.experiment.name.lower())
    cluster_read = ports.beside(lambda: cluster_doc(settings, _cluster_of(ref, props["cluster"]["id"])))
    workspace_read.result()
    exp = exp_read.result()
    if exp is None:
        raise not_found("experiment", ref.experiment.name)
    if deleting(exp):
        raise conflict(f"The experiment '{ref.experiment.name}' is being deleted.", code="ParentResourceBeingDeleted")
    cluster_ref = _cluster_of(ref, props["cluster"]["id"])
    cdoc = cluster_read.result()
    if cdoc is None:
        raise bad_request(f"Invalid value for 'properties.cluster.id': the cluster '{cluster_ref.name}' does not "
                          f"exist in workspace '{ref.experiment.workspace.workspace}'.", "properties.cluster.id")
    cluster_ref = ClusterRef(ref.experiment.workspace, cdoc.data["name"])
    validation.job_fits_cluster(props["nodeCount"], cdoc.data["properties"],
                                *usages.node_ceiling(settings, cdoc.data["properties"]))
    placement_options.gpus_fit_cluster(props.get("gpusPerNode"),
                                vm_sizes.gpu_count(str(cdoc.data["properties"].get("vmSize") or "")))
    props["cluster"] = {"id": cluster_ref.arm_id}
    tool = validation.tool_type(props)
    links = job_links.prepare(settings, ref, props)
    sealed, plain = secret_box.seal_secrets(settings, props), secret_box.open_all(settings, props)
    job_links.index(settings, ref, links)
    doc, _ = create_or_match(
        store(settings, storage.T_JOBS), ref.experiment.job_pk, ref.name.lower(),
        lambda: _belonging(_traced(_linked(resources.new_job(ref, sealed, cluster_ref, tool, str(uuid.uuid4()),
                                                             utcnow()), links)), sweep, scoring_run),
        lambda stored: resources.same_spec("job", secret_box.open_all(settings, stored["properties"]), plain),
        "job", ref.name, if_match)
    if job_links.indexable(doc.data):
        _index(settings, ref, doc)
    else:
        job_links.start(settings, ref, utcnow())
        doc = get_doc(settings, ref)
    return Rendered(resources.render_job(doc.data), doc.etag)


def _linked(data: dict[str, Any], links: dict[str, Any]) -> dict[str, Any]:
    """An array parent or a job waiting on dependencies carries what `job_links` needs."""
    data["internal"].update(links)
    return data


def _traced(data: dict[str, Any]) -> dict[str, Any]:
    """The job carries the trace of its submission: the scheduler's and the nodes' spans join it."""
    parent = telemetry.traceparent()
    if parent:
        data["internal"]["traceparent"] = parent
    return data


def _belonging(data: dict[str, Any], sweep: dict[str, Any] | None, scoring_run: str | None) -> dict[str, Any]:
    if sweep is not None:
        data["internal"]["sweep"] = sweep
    if scoring_run is not None:
        data["internal"]["scoringRun"] = scoring_run
    return data


def _index(settings: Settings, ref: JobRef, doc: Doc) -> None:
    internal = doc.data["internal"]
    if internal.get("phase") != states.JobPhase.QUEUED or internal.get("attempt", 1) != 1:
        return
    conn = settings.storage_connection_string
    props = doc.data["properties"]
    sched_store.add_pending(conn, internal["clusterKey"], ref.key, props.get("schedulingPriority", "normal"),
                            datetime.fromisoformat(internal["submittedAt"]), props["nodeCount"],
                            slots=job_slots(props))
    sched_store.kick(conn, internal["clusterKey"])


def get_doc(settings: Settings, ref: JobRef) -> Doc:
    doc = store(settings, storage.T_JOBS).get(ref.experiment.job_pk, ref.name.lower())
    if doc is None:
        raise not_found("job", ref.name)
    return doc


def get(settings: Settings, ref: JobRef) -> Rendered:
    doc = get_doc(settings, ref)
    return Rendered(resources.render_job(doc.data), doc.etag)


def list_by_experiment(settings: Settings, ref: ExperimentRef, size: int, token: str | None) -> Page:
    docs, nxt = store(settings, storage.T_JOBS).page(ref.job_pk, size, table_token(token))
    return page_of(docs, nxt, lambda d: resources.render_job(d.data))


def terminate(settings: Settings, ref: JobRef) -> Accepted:
    get_doc(settings, ref)
    removal.job_control().terminate_job(settings, ref, "Terminated by the user.")
    if removal.job_terminal(settings, ref):
        return Accepted(None)
    ws = ref.experiment.workspace
    resource = removal.resource_id(ws.subscription, ws.resource_group, ws.workspace, ref.experiment.name, ref.name)
    return Accepted(removal.start_operation(settings, "terminate-job", {"job": ref.key}, resource))


def remote_login(settings: Settings, ref: JobRef) -> Page:
    doc = get_doc(settings, ref)
    cluster = ClusterRef.from_key(doc.data["internal"]["clusterKey"])
    rows = [r for r in node_rows(settings, cluster) if ref.key in node_state.held_jobs(r)]  # packed nodes too
    return Page(login_entries(rows), None)
