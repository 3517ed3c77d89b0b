"""Timer triggers on the local trigger host: six-field NCRONTAB schedules (or a TimeSpan interval),
`%NAME%` settings already resolved, runOnStartup, useMonitor (status kept in azure-webjobs-hosts so a
restart after a missed occurrence fires past due), one tick at a time per function, no retries."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from azure.functions.timer import TimerRequest
from croniter import croniter

from shared.localhost.bindings import FunctionSpec
from shared.localhost.hostjson import parse_timespan
from shared.localhost.hoststore import HostStore
from shared.localhost.invoke import Invoker

log = logging.getLogger("batchai.localhost")

PAST_DUE_TOLERANCE_S = 1.0
MONITOR_MIN_INTERVAL_S = 60.0  # useMonitor's default: on for schedules slower than a minute


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def ncrontab_to_croniter(expression: str) -> str:
    """`{second} {minute} {hour} {day} {month} {day-of-week}` -> croniter's order (seconds last)."""
    fields = expression.split()
    if len(fields) != 6:
        raise ValueError(f"NCRONTAB needs six fields (second first): {expression!r}")
    return " ".join(fields[1:] + fields[:1])


@dataclass(frozen=True)
class Schedule:
    expression: str
    interval_s: float | None  # a TimeSpan schedule ("00:00:05") instead of a cron expression

    @classmethod
    def parse(cls, text: str) -> Schedule:
        text = text.strip()
        if ":" in text and len(text.split()) == 1:
            return cls(text, parse_timespan(text))
        ncrontab_to_croniter(text)
        return cls(text, None)

    def next_after(self, t: dt.datetime) -> dt.datetime:
        if self.interval_s is not None:
            return t + dt.timedelta(seconds=self.interval_s)
        return croniter(ncrontab_to_croniter(self.expression), t).get_next(dt.datetime)

    def typical_interval_s(self, now: dt.datetime) -> float:
        first = self.next_after(now)
        return (self.next_after(first) - first).total_seconds()


class TimerRunner:
    def __init__(self, spec: FunctionSpec, invoker: Invoker, store_factory: Callable[[], HostStore],
                 function_id: str) -> None:
        self.spec = spec
        self.invoker = invoker
        self.store_factory = store_factory
        self.function_id = function_id
        self.schedule = Schedule.parse(str(spec.trigger["schedule"]))
        monitor = spec.trigger.get("useMonitor")
        self.use_monitor = (bool(monitor) if monitor is not None
                            else self.schedule.typical_interval_s(utcnow()) >= MONITOR_MIN_INTERVAL_S)
        self.last: dt.datetime | None = None

    async def run(self, stop: asyncio.Event) -> None:
        log.info("Timer '%s' on schedule '%s'", self.spec.name, self.schedule.expression)
        now = utcnow()
        status = await asyncio.to_thread(self.store_factory().timer_status, self.function_id) \
            if self.use_monitor else None
        if status and status.get("Last"):
            self.last = status["Last"]
        missed = bool(status and status.get("Next") and status["Next"] < now)
        if missed or self.spec.trigger.get("runOnStartup"):
            await self._tick(past_due=missed)
        scheduled = self.schedule.next_after(utcnow())
        while not stop.is_set():
            wait_s = (scheduled - utcnow()).total_seconds()
            if wait_s > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait_s)
                continue
            await self._tick(past_due=-wait_s > PAST_DUE_TOLERANCE_S)
            scheduled = self.schedule.next_after(max(utcnow(), scheduled))

    async def _tick(self, past_due: bool) -> None:
        now = utcnow()
        next_ = self.schedule.next_after(now)
        status = {"Last": (self.last or now).isoformat(), "Next": next_.isoformat(), "LastUpdated": now.isoformat()}
        request = TimerRequest(past_due=past_due, schedule_status=status, schedule={"AdjustForDST": True})
        with contextlib.suppress(Exception):  # a failed tick is not retried; the invoker logged it
            await self.invoker.invoke(self.spec, request)
        self.last = now
        if self.use_monitor:
            await asyncio.to_thread(self.store_factory().write_timer_status, self.function_id, now,
                                    self.schedule.next_after(utcnow()), utcnow())
