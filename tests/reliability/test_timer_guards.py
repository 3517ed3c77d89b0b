"""Every timer loop guards each item: one bad entity never stalls the repair of the others; and the
safety pass finds queued jobs through the jobs' phase column (live work only)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.adapters import storage
from shared.adapters.resource_store import ResourceStore
from shared.config import Settings
from shared.domain.keys import JobRef
from shared.ports.rows import Delete
from shared.services import job_state, safety_pass, scheduling
from tests.scheduling.conftest import T0, World


def unindexed(world: World, name: str) -> JobRef:
    """A queued job missing from its cluster's pending index (a crash between the two writes)."""
    job = world.submit(name)
    for row in world.rows():
        if row["RowKey"].startswith("pend|"):
            world.sched.write(Delete(row["PartitionKey"], row["RowKey"]))
    return job


def test_one_broken_job_does_not_stop_the_repair_of_other_clusters(settings: Settings) -> None:
    bad, good = sorted([World(settings), World(settings)], key=lambda w: w.key)  # the broken cluster comes first
    broken = unindexed(bad, "broken")
    store = ResourceStore(settings.storage_connection_string, storage.T_JOBS)
    store.update(bad.exp.job_pk, "broken", lambda data: data["internal"].pop("submittedAt"))
    missing = unindexed(good, "missing")
    try:
        with pytest.raises(ExceptionGroup) as raised:
            safety_pass.safety_pass(settings, T0 + timedelta(seconds=30))
        assert bad.key in str(raised.value.exceptions)
        assert good.pending_keys() == [missing.key]  # repaired all the same
    finally:
        store.delete(bad.exp.job_pk, broken.name.lower())


def test_the_phase_column_follows_the_job(world: World) -> None:
    world.cluster_doc()
    world.node("n1")
    job = world.submit("tracked")
    jobs = job_state.jobs(world.settings)

    def queued() -> bool:
        return any(d.rk == "tracked" and d.pk == world.exp.job_pk for d in jobs.query("phase", "queued"))

    assert queued()
    scheduling.run_pass(world.settings, world.key, T0)
    assert world.internal(job)["phase"] == "assigned" and not queued()
    assert any(d.rk == "tracked" for d in jobs.query("phase", "assigned"))
    with pytest.raises(ValueError):
        list(jobs.query("doc0", "x"))  # only the documents' columns can be asked for
