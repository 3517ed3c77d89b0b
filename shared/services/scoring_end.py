"""The end of a batch-scoring run: its summary blob in the output container, and the removal of the
work containers of a run that succeeded (a failed run keeps them for inspection). Both are
overwrites and deletes, so doing them again is harmless; `scoring` orders them around the save that
ends a run and has the next step finish an end whose stepper died (`finish`).
"""

from __future__ import annotations

from typing import Any

from shared.adapters import scoring_blobs
from shared.config import Settings
from shared.decisions import scoring as decide
from shared.domain import scoring as sc
from shared.domain.keys import RunRef
from shared.services import data_containers


def summary_of(ref: RunRef, data: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
    props = data["properties"]
    return {"run": ref.arm_id, "name": ref.name, "manifest": props["manifest"],
            "state": props["state"], "reason": reason or props.get("stateReason"),
            "progress": props["progress"], "output": props.get("output"),
            "finalJob": props.get("finalJob"), "items": decide.summary(data["internal"]["chunks"])}


def write_summary(conn: str, ref: RunRef, data: dict[str, Any], reason: str | None = None) -> None:
    """The summary blob written from the run document, which then names it."""
    m = sc.Manifest.from_dict(data["internal"]["manifest"])
    blob = sc.summary_blob(m, ref.name)
    scoring_blobs.write_json(conn, m.output_container, blob, summary_of(ref, data, reason))
    data["properties"]["summary"] = {"container": m.output_container, "blob": blob}


def remove_work_containers(conn: str, ref: RunRef, data: dict[str, Any]) -> None:
    for chunk in data["internal"]["chunks"]:
        for attempt in range(1, chunk["attempt"] + 1):
            scoring_blobs.delete_container(conn, sc.work_container(ref.name, chunk["index"], attempt))
    if sc.Manifest.from_dict(data["internal"]["manifest"]).final_job is not None:
        scoring_blobs.delete_container(conn, sc.work_container(ref.name, None))


def finish(settings: Settings, ref: RunRef, data: dict[str, Any], rewrite_summary: bool, remove_work: bool) -> None:
    """The end's effects for a run as saved: with `rewrite_summary` its summary written again (unless
    its containers are no longer its workspace's), with `remove_work` the work containers of a success
    removed."""
    if rewrite_summary and data["properties"].get("summary"):
        m = sc.Manifest.from_dict(data["internal"]["manifest"])
        if not data_containers.unregistered(settings, m.workspace, [m.input_container, m.output_container]):
            write_summary(settings.data_connection, ref, data)
    if remove_work and data["properties"]["state"] == sc.RunState.SUCCEEDED.value:
        remove_work_containers(settings.data_connection, ref, data)
