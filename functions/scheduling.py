"""Scheduling triggers: schedule kicks, node events and the scheduling safety timer.

Triggers only: parse the message, call one service. Errors propagate so the host retries the
message (and moves it to the poison queue after maxDequeueCount).

The safety timer also advances array jobs and waiting jobs (`job_links.reconcile_all`), the backstop
of their event-driven moves.

- BATCHAI_SAFETY_SCHEDULE: Azure "0 */1 * * * *" (every minute); local "*/5 * * * * *".
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import azure.functions as func

from shared import telemetry
from shared.adapters import storage
from shared.config import Settings
from shared.domain.messages import NodeEvent
from shared.services import job_links, safety_pass, scheduling, task_events
from shared.services.guarded import each

bp = func.Blueprint()


def _utcnow() -> datetime:
    return datetime.now(UTC)


@bp.function_name("schedule_kick")
@bp.queue_trigger(arg_name="msg", queue_name=storage.Q_KICKS, connection="AzureWebJobsStorage")
def schedule_kick(msg: func.QueueMessage) -> None:
    body = json.loads(msg.get_body().decode("utf-8"))
    with telemetry.span("schedule kick", parent=body.get("traceparent"), **{"batchai.cluster": body["cluster"]}):
        scheduling.run_pass_coalesced(Settings.from_env(), body["cluster"], _utcnow)


@bp.function_name("node_events")
@bp.queue_trigger(arg_name="msg", queue_name=storage.Q_EVENTS, connection="AzureWebJobsStorage")
def node_events(msg: func.QueueMessage) -> None:
    event = NodeEvent.from_dict(json.loads(msg.get_body().decode("utf-8")))
    settings, now = Settings.from_env(), datetime.now(UTC)
    with telemetry.span(f"node event {event.kind}", parent=event.traceparent,
                        **{"batchai.node": event.node_id, "batchai.job": event.job_key}):
        if event.kind.startswith("task-"):
            task_events.handle_task_event(settings, event, now, clock=_utcnow)
            return
        from shared.services import nodes  # imported here: node lifecycle lives in its own service

        nodes.handle_node_event(settings, event, now)


@bp.function_name("scheduling_safety_pass")
@bp.timer_trigger(arg_name="timer", schedule="%BATCHAI_SAFETY_SCHEDULE%", run_on_startup=False,
                  use_monitor=False)
def scheduling_safety_pass(timer: func.TimerRequest) -> None:
    settings, now = Settings.from_env(), datetime.now(UTC)
    with telemetry.timed_pass("scheduling safety"):
        each([safety_pass.safety_pass, job_links.reconcile_all], lambda step: step(settings, now), "safety step")
