"""Timer triggers of cluster nodes: the reconciler (with the autoscaler) and the node reaper.

Schedules are NCRONTAB app settings, resolved by the host:
- BATCHAI_RECONCILE_SCHEDULE: Azure "0 */1 * * * *" (every minute); local stack "*/2 * * * * *". The
  reconciler's tick advances the deletions in flight (`removal`), then every cluster.
- BATCHAI_REAPER_SCHEDULE:    Azure "30 */1 * * * *" (every minute, offset); local "*/2 * * * * *".
- BATCHAI_ACI_SCHEDULE:       Azure "*/15 * * * * *"; local "*/2 * * * * *". Jobs of container-instance
  clusters (BATCHAI_PROVIDER=aci); with another provider the tick does nothing.
File server VMs (provider vmss) follow BATCHAI_RECONCILE_SCHEDULE too.
Ticks may be late, missed or doubled: each one reconciles from what it observes.
"""

from __future__ import annotations

from datetime import UTC, datetime

import azure.functions as func

from shared import telemetry
from shared.config import Settings
from shared.services import cluster_reconcile as reconciler
from shared.services.aci_jobs import tick as aci_tick
from shared.services.fileserver_reconcile import reconcile_file_servers
from shared.services.reaper import Watch

#: The schedule settings and their defaults per environment (for infra/ and the local stack).
SCHEDULES: dict[str, dict[str, str]] = {
    "BATCHAI_RECONCILE_SCHEDULE": {"azure": "0 */1 * * * *", "local": "*/2 * * * * *"},
    "BATCHAI_REAPER_SCHEDULE": {"azure": "30 */1 * * * *", "local": "*/2 * * * * *"},
    "BATCHAI_ACI_SCHEDULE": {"azure": "*/15 * * * * *", "local": "*/2 * * * * *"},
}

bp = func.Blueprint()
_reaper_watch = Watch(lambda: datetime.now(UTC))  # lives as long as this process: see shared.services.reaper


@bp.timer_trigger(arg_name="timer", schedule="%BATCHAI_RECONCILE_SCHEDULE%", run_on_startup=False,
                  use_monitor=False)
def cluster_reconcile(timer: func.TimerRequest) -> None:
    with telemetry.timed_pass("reconcile"):
        reconciler.tick(Settings.from_env(), datetime.now(UTC))


@bp.timer_trigger(arg_name="timer", schedule="%BATCHAI_REAPER_SCHEDULE%", run_on_startup=False,
                  use_monitor=False)
def node_reaper(timer: func.TimerRequest) -> None:
    with telemetry.timed_pass("reaper"):
        _reaper_watch.tick(Settings.from_env())


@bp.timer_trigger(arg_name="timer", schedule="%BATCHAI_ACI_SCHEDULE%", run_on_startup=False, use_monitor=False)
def aci_jobs_tick(timer: func.TimerRequest) -> None:
    settings = Settings.from_env()
    if settings.provider == "aci":
        aci_tick(settings, datetime.now(UTC))


@bp.timer_trigger(arg_name="timer", schedule="%BATCHAI_RECONCILE_SCHEDULE%", run_on_startup=False,
                  use_monitor=False)
def fileserver_reconcile(timer: func.TimerRequest) -> None:
    settings = Settings.from_env()
    if settings.provider == "vmss":
        reconcile_file_servers(settings, datetime.now(UTC))
