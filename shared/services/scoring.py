"""Batch-scoring runs: started by a manifest blob (`scoring_start`), advanced by reconcile ticks and at
once when one of their jobs ends (`kick`: the job's end queues the run on `storage.Q_SCORING`). The
only writer of run documents (table `scoringruns`: "{sub}|{rg}|{ws}" / run id; `scoring_start` inserts
them) and of their active-run index (partition `ACTIVE`, one row per run that is not finished).

Runs read and write blobs of the data account only (`Settings.data_connection`): the input and
output containers, which must stay data containers the run's workspace registered (checked on every
tick: a container released or taken by another workspace fails the run), and the work containers.

Each tick loads a run, acts on the difference between its chunks and their jobs (create the jobs
of unsubmitted chunks, settle the ones whose job ended, retry failed items within bounds), then
saves the run with its ETag; on a conflict it re-reads and does it again. Every side effect is
idempotent (jobs are created by derived name with the API's create-or-match, blobs are
overwritten), so a doubled, late or repeated tick is harmless. The end's effects (`scoring_end`)
are ordered: the work containers of a run that succeeded are removed only after the save that ends
it (a step that loses the save may still be reading their results), and its index row goes only
after that; a step that wrote the summary and lost the save writes it again from the run as saved.
A run whose saved end outlived its stepper (the index row still there) has its end finished by the
next step.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import datetime, timedelta
from typing import Any

from shared import ports
from shared.adapters import scoring_blobs, storage
from shared.adapters.resource_store import Doc, ResourceStore, StaleEtag
from shared.config import Settings
from shared.decisions import scoring as decide
from shared.domain import resources, states
from shared.domain import scoring as sc
from shared.domain.errors import ApiError, not_found
from shared.domain.keys import JobRef, RunRef, WorkspaceRef
from shared.ports.rows import Query
from shared.services import data_containers, jobs, scoring_end
from shared.services.api_common import Page, Rendered, page_of, store, table_token
from shared.services.guarded import each

log = logging.getLogger(__name__)

ACTIVE = "~active"
_submitters = ThreadPoolExecutor(max_workers=4, thread_name_prefix="scoring-submit")  # a step's job creations
_stepping: Counter[str] = Counter()  # runs (index rows) this process is stepping now, or waits to
_steps: dict[str, threading.Lock] = {}  # one step of a run at a time in this process
_stepping_lock = threading.Lock()
SAS_LIFETIME = timedelta(days=7)
SAVE_ATTEMPTS = 10
MAX_NAME_CHARS = 150_000  # item names appear about three times in a run document (< 900,000 characters)


def runs_store(settings: Settings) -> ResourceStore:
    return store(settings, storage.T_SCORING_RUNS)


def move(data: dict[str, Any], target: sc.RunState, reason: str, now: datetime, code: str | None = None) -> None:
    props = data["properties"]
    data["internal"]["history"].append(sc.run_transition(props["state"], target, reason, now))
    props["state"] = target.value
    props["stateTransitionTime"] = resources.iso(now)
    props["stateReason"] = reason
    if target in sc.RUN_TERMINAL:
        props["endTime"] = resources.iso(now)
    if code is not None:
        props["errors"].append({"code": code, "message": reason})


def reconcile_all(settings: Settings, now: datetime) -> int:
    """Advance every active run but those this process is stepping now (that step saves what it does;
    the next tick is the backstop); the number of runs looked at. One run's transient error does not
    stop the others: their errors are raised together after all were tried."""
    runs = runs_store(settings)
    with _stepping_lock:
        busy = set(_stepping)
    rows = [r.rk for r in runs.table.query(Query(pk=ACTIVE)) if r.rk not in busy]
    each(rows, lambda row: advance(settings, RunRef.from_index_row(row), now), "advancing the scoring run")
    return len(rows)


def kick(settings: Settings, index_row: str, job: str) -> None:
    """Ask for a step of a run now, for the job of it that ended (at-least-once: a step is idempotent,
    the tick is the backstop)."""
    ports.of(settings.storage_connection_string).queues.send(storage.Q_SCORING,
                                                             json.dumps({"run": index_row, "job": job}))


def on_kick(settings: Settings, body: str, now: datetime) -> str | None:
    """Advance the run a kick names, settling the job it names (a kick without one settles every
    job, as a tick does); None for a kick that names no run (logged and dropped)."""
    try:
        message = json.loads(body)
        ref = RunRef.from_index_row(str(message["run"]))
        job = message.get("job")
    except (ValueError, KeyError, TypeError, AttributeError):
        log.warning("Dropped a scoring kick that names no run: %r", body[:200])
        return None
    return advance(settings, ref, now, ended=str(job).lower() if job else None)


def advance(settings: Settings, ref: RunRef, now: datetime, ended: str | None = None) -> str | None:
    """One reconcile step of a run; its state afterwards (None: no such run). `ended`: the one job
    whose end the step settles (the others' documents are not read); None: every job's."""
    with _stepping_lock:
        _stepping[ref.index_row] += 1
        one_at_a_time = _steps.setdefault(ref.index_row, threading.Lock())
    try:
        # Two kicks of one run (two of its jobs ended together) step it one after the other here: side
        # by side, the one that loses the save would have done its reads and job creations for nothing.
        with one_at_a_time:
            return _advance(settings, ref, now, ended)
    finally:
        with _stepping_lock:
            _stepping[ref.index_row] -= 1
            if not _stepping[ref.index_row]:
                del _stepping[ref.index_row]
                del _steps[ref.index_row]


def _advance(settings: Settings, ref: RunRef, now: datetime, ended: str | None) -> str | None:
    runs = runs_store(settings)
    overwrote = False  # a summary written by an attempt whose save lost: it may not be what was saved
    for _ in range(SAVE_ATTEMPTS):
        doc = runs.get(ref.workspace.child_pk, ref.name.lower())
        if doc is None:
            runs.delete(ACTIVE, ref.index_row)
            return None
        data = copy.deepcopy(doc.data)
        if sc.RunState(data["properties"]["state"]) in sc.RUN_TERMINAL:
            unfinished = runs.table.get(ACTIVE, ref.index_row) is not None  # its ending step may have died
            _finish_end(settings, runs, ref, data, rewrite_summary=unfinished or overwrote, ended=unfinished)
            return str(data["properties"]["state"])
        step = _Step(settings, ref, data, now, ended)
        step.run()
        if data != doc.data:
            try:
                runs.replace(doc, data)
            except StaleEtag:
                overwrote = overwrote or step.wrote_summary
                continue
        ended_now = sc.RunState(data["properties"]["state"]) in sc.RUN_TERMINAL
        _finish_end(settings, runs, ref, data, rewrite_summary=overwrote and not step.wrote_summary, ended=ended_now)
        return str(data["properties"]["state"])
    raise StaleEtag(f"scoring run {ref.name} kept changing")


def _finish_end(settings: Settings, runs: ResourceStore, ref: RunRef, data: dict[str, Any], rewrite_summary: bool,
                ended: bool) -> None:
    """The effects that follow a save, in order: the summary written again (`rewrite_summary`) and, for a
    run whose end is still to finish (`ended`), its work containers removed, then its index row."""
    scoring_end.finish(settings, ref, data, rewrite_summary, remove_work=ended)
    if ended:
        runs.delete(ACTIVE, ref.index_row)


class _Step:
    """Load-decide-apply for one run document (mutated in place)."""

    def __init__(self, settings: Settings, ref: RunRef, data: dict[str, Any], now: datetime,
                 ended: str | None = None) -> None:
        self.settings = settings
        self.ended = ended  # the only job to settle (lower case), or None: every one
        self.conn = settings.data_connection
        self.ref = ref
        self.data = data
        self.now = now
        self.manifest = sc.Manifest.from_dict(data["internal"]["manifest"])
        self.account, self.key = scoring_blobs.account(self.conn)
        self.wrote_summary = False

    @property
    def chunks(self) -> list[dict[str, Any]]:
        return self.data["internal"]["chunks"]

    def run(self) -> None:
        m = self.manifest
        unregistered = data_containers.unregistered(self.settings, m.workspace, [m.input_container, m.output_container])
        if unregistered:  # the run stops, and writes nothing more to containers no longer its workspace's
            error = data_containers.not_registered(m.workspace.workspace, unregistered)
            return self._end_failed(error.message, error.code, summary=False)
        state = sc.RunState(self.data["properties"]["state"])
        if state == sc.RunState.PREPARING:
            self._prepare()
            state = sc.RunState(self.data["properties"]["state"])
        if state == sc.RunState.SCORING:
            self._score()
        elif state == sc.RunState.FINALIZING:
            self._finalize()

    def _fail(self, reason: str, code: str) -> None:
        move(self.data, sc.RunState.FAILED, reason, self.now, code=code)

    def _prepare(self) -> None:
        m = self.manifest
        names = scoring_blobs.list_inputs(self.conn, m.input_container, m.input_prefix, sc.MAX_ITEMS)
        where = f"'{m.input_container}/{m.input_prefix}'"
        if names is None:
            return self._fail(f"The input container '{m.input_container}' does not exist.", "NoInputs")
        if not names:
            return self._fail(f"There are no input blobs under {where}.", "NoInputs")
        if len(names) > sc.MAX_ITEMS:
            return self._fail(f"More than {sc.MAX_ITEMS} input blobs under {where}; split the run.", "TooManyInputs")
        if sum(len(n) for n in names) > MAX_NAME_CHARS:
            return self._fail(f"The input blob names under {where} are too long to track in one run "
                              f"(over {MAX_NAME_CHARS} characters in all); split the run.", "TooManyInputs")
        self.data["internal"]["chunks"] = decide.new_chunks(names, m.items_per_job)
        move(self.data, sc.RunState.SCORING, f"{len(names)} items in {len(self.chunks)} jobs", self.now)
        self._record_progress()

    # Scoring jobs -------------------------------------------------------------------------------

    def _job_ref(self, name: str) -> JobRef:
        return self.manifest.workspace.experiment(self.manifest.experiment).job(name)

    def _job_doc(self, name: str) -> Doc | None:
        ref = self._job_ref(name)
        return store(self.settings, storage.T_JOBS).get(ref.experiment.job_pk, name.lower())

    def _create_job(self, name: str, container: str, template: dict[str, Any], items_doc: dict[str, Any]) -> None:
        scoring_blobs.write_items(self.conn, container, items_doc, sc.ITEMS_FILE)
        props = sc.job_properties(self.manifest, template, container, self.account, self.key)
        jobs.create(self.settings, self._job_ref(name), {"properties": props}, scoring_run=self.ref.index_row)

    def _submit(self, chunk: dict[str, Any]) -> None:
        run, m = self.ref.name, self.manifest
        name = sc.chunk_job_name(run, chunk["index"], chunk["attempt"])
        expires = self.now + SAS_LIFETIME
        items = [{"name": item, "url": scoring_blobs.read_url(self.conn, m.input_container, item, expires)}
                 for item in chunk["todo"]]
        self._create_job(name, sc.work_container(run, chunk["index"], chunk["attempt"]), m.job_template,
                         {"kind": "chunk", "run": run, "job": name, "chunk": chunk["index"],
                          "attempt": chunk["attempt"], "items": items, "resultsFile": sc.RESULTS_FILE,
                          "outputDir": sc.OUTPUTS_DIR})
        chunk["submitted"] = True

    def _copy_outputs(self, container: str) -> dict[str, str]:
        """Copy the job's outputs/ to the output container; relative path -> destination blob name."""
        m = self.manifest
        prefix = f"{sc.OUTPUTS_DIR}/"
        names = scoring_blobs.list_names(self.conn, container, prefix)
        mapping = {n[len(prefix):]: f"{m.output_prefix}{n[len(prefix):]}" for n in names}
        scoring_blobs.copy_blobs(self.conn, container, [(prefix + rel, dest) for rel, dest in mapping.items()],
                                 m.output_container, self.now + timedelta(hours=1))
        return mapping

    def _attempt_end(self, job: Doc | None, container: str) -> tuple[decide.AttemptEnd, dict[str, str]]:
        """How the job's attempt ended, and its outputs copied (relative path -> destination blob)."""
        if job is None:
            return decide.AttemptEnd(False, "the job was deleted before it ended", None), {}
        internal = job.data["internal"]
        ok = internal.get("phase") == states.JobPhase.SUCCEEDED
        rendered = resources.render_job(job.data)["properties"].get("executionInfo") or {}
        error = None
        if not ok:
            errors = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in rendered.get("errors") or [])
            error = f"job {job.data['name']} failed (exit code {rendered.get('exitCode')})" + \
                (f": {errors}" if errors else "")
        results = sc.parse_results(scoring_blobs.read_blob(self.conn, container, sc.RESULTS_FILE))
        mapping = self._copy_outputs(container)
        outputs = {item: [mapping.get(rel, f"{self.manifest.output_prefix}{rel}") for rel in r.outputs]
                   for item, r in (results or {}).items()}
        return decide.AttemptEnd(ok, error, results, outputs), mapping

    def _submit_all(self, chunks: list[dict[str, Any]]) -> str | None:
        """Create the chunks' jobs side by side; the reason the first refused one was refused (None: all
        were created). A transient error is raised once every creation has ended."""
        futures = [_submitters.submit(self._submit, chunk) for chunk in chunks]
        wait(futures)
        refusal: str | None = None
        for chunk, future in zip(chunks, futures, strict=True):
            error = future.exception()
            if error is None:
                continue
            if not isinstance(error, ApiError) or error.status >= 500:
                raise error
            refusal = refusal or (f"The job template was refused for job "
                                  f"{sc.chunk_job_name(self.ref.name, chunk['index'], chunk['attempt'])}: "
                                  f"{error.message}")
        return refusal

    def _score(self) -> None:
        fresh = [c for c in self.chunks if not c["done"] and not c["submitted"]]
        refusal = self._submit_all(fresh)
        if refusal is not None:
            return self._end_failed(refusal, "JobRejected")
        just_submitted = {c["index"] for c in fresh}
        for i, chunk in enumerate(self.chunks):
            if chunk["done"] or chunk["index"] in just_submitted:
                continue
            name = sc.chunk_job_name(self.ref.name, chunk["index"], chunk["attempt"])
            if self.ended is not None and name.lower() != self.ended:
                continue
            job = self._job_doc(name)
            if job is not None and states.JobPhase(job.data["internal"].get("phase")) not in states.JOB_TERMINAL:
                continue
            end, _ = self._attempt_end(job, sc.work_container(self.ref.name, chunk["index"], chunk["attempt"]))
            self.chunks[i] = decide.settle_attempt(chunk, end, self.manifest.max_retries)
            if not self.chunks[i]["done"]:
                self._submit(self.chunks[i])
        self._record_progress()
        verdict = decide.scoring_verdict(self.chunks, self.manifest.threshold)
        if verdict.kind == "fail":
            return self._end_failed(verdict.reason, "ErrorThresholdExceeded")
        if verdict.kind == "scored":
            if self.manifest.final_job is None:
                move(self.data, sc.RunState.SUCCEEDED, verdict.reason, self.now)
                return self._write_summary()
            self._write_summary()
            try:
                self._submit_final()
            except ApiError as e:
                if e.status >= 500:
                    raise
                self._fail(f"The final job was refused: {e.message}", "JobRejected")
                return self._write_summary()
            move(self.data, sc.RunState.FINALIZING, verdict.reason + " Running the final job.", self.now)

    def _end_failed(self, reason: str, code: str, summary: bool = True) -> None:
        """Stop the jobs still running, write the summary, fail the run."""
        for chunk in self.chunks:
            if chunk["submitted"] and not chunk["done"]:
                name = sc.chunk_job_name(self.ref.name, chunk["index"], chunk["attempt"])
                job = self._job_doc(name)
                if job is not None and states.JobPhase(job.data["internal"]["phase"]) not in states.JOB_TERMINAL:
                    jobs.terminate(self.settings, self._job_ref(name))
        self._record_progress()
        self._fail(reason, code)
        if summary:
            self._write_summary(reason)

    def _record_progress(self) -> None:
        running = sum(1 for c in self.chunks if c["submitted"] and not c["done"])
        self.data["properties"]["progress"] = decide.progress(self.chunks, running)

    # Summary and final job ------------------------------------------------------------------------

    def _write_summary(self, reason: str | None = None) -> None:
        scoring_end.write_summary(self.conn, self.ref, self.data, reason)
        self.wrote_summary = True

    def _submit_final(self) -> None:
        run, m = self.ref.name, self.manifest
        name = sc.final_job_name(run)
        expires = self.now + SAS_LIFETIME
        rows = decide.summary(self.chunks)
        for row in rows:
            row["outputs"] = [{"name": o, "url": scoring_blobs.read_url(self.conn, m.output_container, o, expires)}
                              for o in row.get("outputs") or []]
        assert m.final_job is not None
        self._create_job(name, sc.work_container(run, None), m.final_job,
                         {"kind": "final", "run": run, "job": name, "items": rows, "resultsFile": sc.RESULTS_FILE,
                          "outputDir": sc.OUTPUTS_DIR})
        self.data["properties"]["finalJob"] = {"name": name, "state": "queued"}

    def _finalize(self) -> None:
        name = sc.final_job_name(self.ref.name)
        job = self._job_doc(name)
        if job is not None and states.JobPhase(job.data["internal"].get("phase")) not in states.JOB_TERMINAL:
            self.data["properties"]["finalJob"]["state"] = resources.render_job(job.data)["properties"][
                "executionState"]
            return
        end, outputs = self._attempt_end(job, sc.work_container(self.ref.name, None))
        self.data["properties"]["finalJob"] = {"name": name, "state": "succeeded" if end.job_succeeded else "failed",
                                               "outputs": sorted(outputs.values())}
        if end.job_succeeded:
            move(self.data, sc.RunState.SUCCEEDED, "Scoring and the final job succeeded.", self.now)
            self._write_summary()
        else:
            reason = f"The final job failed: {end.job_error}"
            self._fail(reason, "FinalJobFailed")
            self._write_summary(reason)


# Reading runs (the API) -----------------------------------------------------------------------------

def render(doc: Doc) -> dict[str, Any]:
    return resources.redact({k: v for k, v in doc.data.items() if k != "internal"})


def get(settings: Settings, ref: RunRef) -> Rendered:
    doc = runs_store(settings).get(ref.workspace.child_pk, ref.name.lower())
    if doc is None:
        raise not_found("batch scoring run", ref.name)
    return Rendered(render(doc), doc.etag)


def list_by_workspace(settings: Settings, ws: WorkspaceRef, size: int, token: str | None) -> Page:
    docs, nxt = runs_store(settings).page(ws.child_pk, size, table_token(token))
    return page_of(docs, nxt, render)
