"""Parameter sweeps: create, read, cancel, delete (the API records intent), and the reconcile tick that
advances every live sweep. The only writer of sweep documents (table `sweeps`: experiment key / sweep
name) and of their live index (partition `~active`, one row per sweep not yet ended).

A tick loads a sweep, looks at its children (jobs `{sweep}-{i:03d}` of the same experiment), reads the
primary metric of each (`metrics.job_metrics`), asks the policy which running children to stop and
stops them (`job_control.terminate_job` with the stop `early-terminated`: the job fails with
EarlyTerminated and the policy's reason), creates children up to the concurrency budget, and ends the
sweep with the best run once the budget is spent and every child ended. The document is saved with its
ETag; on a conflict the tick re-reads and does it again. Every side effect is idempotent: children are
created by derived name with the job API's create-or-match, sampling is a function of (seed, index),
and terminating a job that already ends does nothing; so a doubled, late or repeated tick is harmless.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.adapters import secret_box, storage
from shared.adapters.resource_store import Doc, ResourceStore, StaleEtag
from shared.config import Settings
from shared.decisions import job_outcome
from shared.decisions import sweeps as decide
from shared.domain import resources, validation
from shared.domain import sweeps as sw
from shared.domain.errors import ApiError, bad_request, conflict, not_found
from shared.domain.keys import SEP, ExperimentRef, JobRef, WorkspaceRef
from shared.ports.rows import Query, Upsert
from shared.services import job_control, jobs, metrics
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
from shared.services.guarded import each

ACTIVE = "~active"
SAVE_ATTEMPTS = 10
EARLY_TERMINATED_STOP = job_outcome.EARLY_TERMINATED
ENDED = ("succeeded", "failed")
STOPPING = (*ENDED, "terminating")  # a stop was recorded on the job: its tasks are being stopped


@dataclass(frozen=True)
class SweepRef:
    experiment: ExperimentRef
    name: str

    @property
    def arm_id(self) -> str:
        return f"{self.experiment.arm_id}/sweeps/{self.name}"

    @property
    def index_row(self) -> str:
        return f"{self.experiment.job_pk}{SEP}{self.name.lower()}"

    @classmethod
    def from_index_row(cls, row: str) -> SweepRef:
        sub, rg, ws, exp, name = row.split(SEP)
        return cls(ExperimentRef(WorkspaceRef(sub, rg, ws), exp), name)

    def child(self, index: int) -> JobRef:
        return self.experiment.job(sw.child_name(self.name, index))


def sweeps_store(settings: Settings) -> ResourceStore:
    return store(settings, storage.T_SWEEPS)


def move(data: dict[str, Any], target: sw.SweepState, reason: str, now: datetime, code: str | None = None) -> None:
    props = data["properties"]
    data["internal"]["history"].append(sw.sweep_transition(props["state"], target, reason, now))
    props["state"] = target.value
    props["stateTransitionTime"] = resources.iso(now)
    props["stateReason"] = reason
    if target in sw.SWEEP_TERMINAL:
        props["endTime"] = resources.iso(now)
    if code is not None:
        props["errors"].append({"code": code, "message": reason})


# The API ------------------------------------------------------------------------------------------------

def _check_template(settings: Settings, ref: SweepRef, spec: sw.Spec) -> None:
    """The template as the job API would take it for the first child: shape, cluster in the workspace."""
    first = decide.sample(spec.parameters, spec.sampling, spec.seed, 0)
    try:
        props = validation.job_create({"properties": sw.child_properties(spec.template, first)},
                                      settings.key_vault_hosts)
    except ApiError as e:
        raise bad_request(f"The job template is not a valid job: {e.message}",
                          "properties.jobTemplate" + (f".{e.target}" if e.target else "")) from e
    parsed = resources.parse_cluster_id(props["cluster"]["id"])
    ws = ref.experiment.workspace
    if parsed is None or tuple(p.lower() for p in parsed[:3]) != (ws.subscription.lower(), ws.resource_group.lower(),
                                                                    ws.workspace.lower()):
        raise bad_request("The job template's cluster must be a cluster of the sweep's workspace.",
                          "properties.jobTemplate.properties.cluster.id")


def _new(ref: SweepRef, spec: sw.Spec, sealed_template: dict[str, Any], now: datetime) -> dict[str, Any]:
    t = resources.iso(now)
    props = sw.spec_document(spec)
    props["jobTemplate"] = {"properties": sealed_template}
    props.update(state=sw.SweepState.RUNNING.value, stateTransitionTime=t, creationTime=t,
                 provisioningState="succeeded", runs=[], bestRun=None, errors=[])
    return {"id": ref.arm_id, "name": ref.name, "type": sw.T_SWEEP, "properties": props,
            "internal": {"history": []}}


def create(settings: Settings, ref: SweepRef, body: Any, if_match: str | None = None, now: datetime | None = None
           ) -> Rendered:
    now = now or utcnow()
    if len(ref.name) > sw.MAX_SWEEP_NAME:
        raise bad_request(f"The parameter 'sweepName' has an invalid value: a sweep name has at most "
                          f"{sw.MAX_SWEEP_NAME} characters (its jobs add '-NNN').", "sweepName",
                          code="InvalidParameter")
    spec = sw.parse(body)
    _check_template(settings, ref, spec)
    live_workspace(settings, ref.experiment.workspace)
    exp = store(settings, storage.T_EXPERIMENTS).get(ref.experiment.workspace.child_pk, ref.experiment.name.lower())
    if exp is None:
        raise not_found("experiment", ref.experiment.name)
    if deleting(exp):
        raise conflict(f"The experiment '{ref.experiment.name}' is being deleted.", code="ParentResourceBeingDeleted")
    sealed = secret_box.seal_secrets(settings, spec.template)
    wanted = sw.spec_document(spec)
    doc, created = create_or_match(
        sweeps_store(settings), ref.experiment.job_pk, ref.name.lower(), lambda: _new(ref, spec, sealed, now),
        lambda stored: _same(settings, stored["properties"], wanted), "sweep", ref.name, if_match)
    if created or sw.SweepState(doc.data["properties"]["state"]) not in sw.SWEEP_TERMINAL:
        sweeps_store(settings).table.write(Upsert(ACTIVE, ref.index_row, {}))
    return Rendered(render(doc), doc.etag)


def _same(settings: Settings, stored: dict[str, Any], wanted: dict[str, Any]) -> bool:
    mine = {k: stored.get(k) for k in wanted}
    mine["jobTemplate"] = {"properties": secret_box.open_all(settings, stored["jobTemplate"]["properties"])}
    return mine == wanted


def render(doc: Doc) -> dict[str, Any]:
    return resources.redact({k: v for k, v in doc.data.items() if k != "internal"})


def get_doc(settings: Settings, ref: SweepRef) -> Doc:
    doc = sweeps_store(settings).get(ref.experiment.job_pk, ref.name.lower())
    if doc is None or deleting(doc):
        raise not_found("sweep", ref.name)
    return doc


def get(settings: Settings, ref: SweepRef) -> Rendered:
    doc = get_doc(settings, ref)
    return Rendered(render(doc), doc.etag)


def list_by_experiment(settings: Settings, ref: ExperimentRef, size: int, token: str | None) -> Page:
    docs, nxt = sweeps_store(settings).page(ref.job_pk, size, table_token(token))
    return page_of([d for d in docs if not deleting(d)], nxt, render)


def _ask_cancel(settings: Settings, ref: SweepRef, reason: str, delete: bool, now: datetime) -> Doc | None:
    def mutate(data: dict[str, Any]) -> None:
        if delete:
            data["internal"]["deletingSince"] = data["internal"].get("deletingSince") or resources.iso(now)
        if data["properties"]["state"] == sw.SweepState.RUNNING:
            move(data, sw.SweepState.CANCELING, reason, now)
    doc = sweeps_store(settings).update(ref.experiment.job_pk, ref.name.lower(), mutate)
    if doc is not None:
        sweeps_store(settings).table.write(Upsert(ACTIVE, ref.index_row, {}))
    return doc


def cancel(settings: Settings, ref: SweepRef, now: datetime | None = None) -> Rendered:
    """Cancel: the sweep creates no more children and stops the running ones (its tick finishes the job)."""
    get_doc(settings, ref)
    now = now or utcnow()
    _ask_cancel(settings, ref, "Canceled by the user.", False, now)
    advance(settings, ref, now)
    return get(settings, ref)


def delete(settings: Settings, ref: SweepRef, now: datetime | None = None) -> Accepted:
    """Delete is intent: the sweep is canceled and its document removed by its tick once its children
    ended; the children stay, as the experiment's jobs."""
    now = now or utcnow()
    if _ask_cancel(settings, ref, "The sweep is being deleted.", True, now) is None:
        return Accepted(None, existed=False)
    advance(settings, ref, now)
    return Accepted(None)


def remove(settings: Settings, ref: SweepRef, now: datetime | None = None) -> bool:
    """The deletion of an experiment's sweep: True once its document is gone."""
    delete(settings, ref, now)
    return sweeps_store(settings).get(ref.experiment.job_pk, ref.name.lower()) is None


# The tick ---------------------------------------------------------------------------------------------

def reconcile_all(settings: Settings, now: datetime) -> int:
    """Advance every live sweep; the number looked at. One sweep's transient error does not stop the
    others: their errors are raised together after all were tried."""
    rows = [r.rk for r in sweeps_store(settings).table.query(Query(pk=ACTIVE))]
    each(rows, lambda row: advance(settings, SweepRef.from_index_row(row), now), "advancing the sweep")
    return len(rows)


def advance(settings: Settings, ref: SweepRef, now: datetime) -> str | None:
    """One reconcile step of a sweep; its state afterwards (None: no such sweep)."""
    table = sweeps_store(settings)
    for _ in range(SAVE_ATTEMPTS):
        doc = table.get(ref.experiment.job_pk, ref.name.lower())
        if doc is None:
            table.delete(ACTIVE, ref.index_row)
            return None
        data = copy.deepcopy(doc.data)
        if sw.SweepState(data["properties"]["state"]) not in sw.SWEEP_TERMINAL:
            _Step(settings, ref, data, now).run()
        state = sw.SweepState(data["properties"]["state"])
        try:
            if data != doc.data:
                doc = table.replace(doc, data)
            if state in sw.SWEEP_TERMINAL and data["internal"].get("deletingSince"):
                table.delete(ref.experiment.job_pk, ref.name.lower(), doc.etag)
        except StaleEtag:
            continue
        if state in sw.SWEEP_TERMINAL:
            table.delete(ACTIVE, ref.index_row)
        return state.value
    raise StaleEtag(f"sweep {ref.name} kept changing")


def _stopped(run: dict[str, Any]) -> bool:
    """Stopped by the policy: its job says so, or the stop was decided and the job did not succeed first."""
    return "earlyTerminated" in run or ("stopReason" in run and run["state"] != "succeeded")


class _Step:
    """Load-decide-apply for one sweep document (mutated in place)."""

    def __init__(self, settings: Settings, ref: SweepRef, data: dict[str, Any], now: datetime) -> None:
        self.settings, self.ref, self.data, self.now = settings, ref, data, now
        self.props = data["properties"]
        self.spec = sw.parse_stored({k: v for k, v in self.props.items() if k != "jobTemplate"} |
                                    {"jobTemplate": {"properties": {}}})
        self.template = self.props["jobTemplate"]["properties"]

    @property
    def runs(self) -> list[dict[str, Any]]:
        return self.props["runs"]

    def run(self) -> None:
        self._observe()
        if self.props["state"] == sw.SweepState.RUNNING:
            self._apply_policy()
            self._create_children()
        elif self.props["state"] == sw.SweepState.CANCELING:
            self._stop_all()
        self._conclude()

    def _observe(self) -> None:
        """Each live child's state and primary metric as its job says now."""
        for run in self.runs:
            if run["state"] in ENDED:
                continue
            if not self._refresh_state(run):
                continue
            series = metrics.job_metrics(self.settings, self.ref.child(run["index"]), self.spec.metric)
            values = [float(p["value"]) for s in series[:1] for p in s.points]
            run.update(reports=len(values), values=values[:sw.MAX_REPORTS], metric=values[-1] if values else None)

    def _apply_policy(self) -> None:
        candidates = [decide.RunMetrics(r["index"], tuple(r.get("values") or ()),
                                        r["state"] not in ENDED and "stopReason" not in r)
                      for r in self.runs]
        for stop in decide.judge(self.spec.policy, self.spec.goal, self.spec.metric, candidates):
            run = next(r for r in self.runs if r["index"] == stop.index)
            run["stopReason"] = stop.reason
        for run in self.runs:  # again on the next tick if this one died before the job recorded the stop
            if "stopReason" in run and run["state"] not in STOPPING:
                job_control.terminate_job(self.settings, self.ref.child(run["index"]), run["stopReason"], self.now,
                                          stop=EARLY_TERMINATED_STOP)
                self._refresh_state(run)  # a queued job ends at once: its place is free for the next child

    def _refresh_state(self, run: dict[str, Any]) -> bool:
        """The child's state (and the policy's reason, once its job ended by it); False: its job is gone."""
        ref = self.ref.child(run["index"])
        doc = store(self.settings, storage.T_JOBS).get(ref.experiment.job_pk, ref.name.lower())
        if doc is None:
            run.update(state="failed", stateReason="the job was deleted")
            return False
        rendered = resources.render_job(doc.data)["properties"]
        run["state"] = rendered["executionState"]
        errors = (rendered.get("executionInfo") or {}).get("errors") or []
        early = next((e for e in errors if e.get("code") == sw.EARLY_TERMINATED), None)
        if early is not None:
            run["earlyTerminated"] = early.get("message")
        return True

    def _create_children(self) -> None:
        live = sum(1 for r in self.runs if r["state"] not in ENDED)
        while len(self.runs) < self.spec.max_total_runs and live < self.spec.max_concurrent_runs:
            index = len(self.runs)
            params = decide.sample(self.spec.parameters, self.spec.sampling, self.spec.seed, index)
            ref = self.ref.child(index)
            props = sw.child_properties(secret_box.open_all(self.settings, self.template), params)
            try:
                jobs.create(self.settings, ref, {"properties": props}, sweep={
                    "name": self.ref.name, "index": index, "parameters": params})
            except ApiError as e:
                if e.status >= 500:
                    raise
                reason = f"The job template was refused for job {ref.name}: {e.message}"
                move(self.data, sw.SweepState.FAILED, reason, self.now, code="JobRejected")
                self._stop_all()
                return
            self.runs.append({"index": index, "job": ref.name, "parameters": params, "state": "queued",
                              "reports": 0, "values": [], "metric": None})
            live += 1

    def _stop_all(self) -> None:
        for run in self.runs:
            if run["state"] not in STOPPING:
                job_control.terminate_job(self.settings, self.ref.child(run["index"]),
                                          f"The sweep {self.ref.name} was canceled.", self.now)
                self._refresh_state(run)

    def _conclude(self) -> None:
        ended = all(r["state"] in ENDED for r in self.runs)
        best = decide.best_run(self.spec.goal, [
            decide.Candidate(r["index"], r["job"], r.get("metric"), not _stopped(r))
            for r in self.runs])
        self.props["bestRun"] = None if best is None else {
            "name": best.job, "index": best.index, "metric": self.spec.metric, "value": best.value,
            "parameters": self.runs[best.index]["parameters"]}
        stopped = sum(1 for r in self.runs if _stopped(r))
        self.props["summary"] = {"created": len(self.runs), "earlyTerminated": stopped,
                                 "running": sum(1 for r in self.runs if r["state"] not in ENDED),
                                 "succeeded": sum(1 for r in self.runs if r["state"] == "succeeded")}
        if not ended:
            return
        state = sw.SweepState(self.props["state"])
        if state == sw.SweepState.CANCELING:
            move(self.data, sw.SweepState.CANCELED, self.props.get("stateReason") or "Canceled.", self.now)
        elif state == sw.SweepState.RUNNING and len(self.runs) >= self.spec.max_total_runs:
            where = f"best run {best.job}: {self.spec.metric} = {best.value}" if best else "no run reported the metric"
            move(self.data, sw.SweepState.SUCCEEDED, f"{len(self.runs)} runs ended ({stopped} stopped early); {where}",
                 self.now)
