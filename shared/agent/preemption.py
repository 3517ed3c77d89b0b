"""Preemption notices: the Azure Scheduled Events ``Preempt`` event, and its local stand-ins.

Every source calls the same `on_preempt(source)`; the agent then stops its tasks (stop reason
"preempted"), reports them, and sends ``node-preempted``, all within the ~30 s notice.

- Locally: SIGUSR1 to the agent (what the local compute provider's ``preempt`` sends), or a file
  ``<workdir>/preempt`` appearing (for tools that cannot signal the process).
- On a machine (``--config``: the config's IMDS) or an Azure VM of the process topology
  (BATCHAI_ON_AZURE=1): `ScheduledEventsPoller` polls IMDS for ``Preempt`` events of this VM.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from shared.agent.retry import Backoff

log = logging.getLogger(__name__)

IMDS_SCHEDULED_EVENTS = "http://169.254.169.254/metadata/scheduledevents?api-version=2020-07-01"


class LocalPreemptNotice:
    """SIGUSR1 and the preempt file, watched on a thread (the signal handler only sets a flag)."""

    def __init__(self, preempt_file: Path, on_preempt: Callable[[str], None], stopping: threading.Event,
                 interval_s: float = 0.25) -> None:
        self.preempt_file = preempt_file
        self.on_preempt = on_preempt
        self.stopping = stopping
        self.interval_s = interval_s
        self._signalled = threading.Event()
        self._thread = threading.Thread(target=self._run, name="preempt-notice", daemon=True)

    def install_signal(self) -> None:
        """Call from the main thread."""
        signal.signal(signal.SIGUSR1, lambda *_: self._signalled.set())

    def start(self) -> LocalPreemptNotice:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self.stopping.wait(self.interval_s):
            if self._signalled.is_set():
                self.on_preempt("SIGUSR1")
                return
            if self.preempt_file.exists():
                self.on_preempt(f"file {self.preempt_file}")
                return


def preempt_events(document: dict[str, Any], vm_name: str | None = None) -> list[dict[str, Any]]:
    """The Preempt events of a Scheduled Events document that concern this VM."""
    events = []
    for event in document.get("Events") or []:
        if event.get("EventType") != "Preempt":
            continue
        resources = event.get("Resources") or []
        if vm_name and resources and vm_name not in resources:
            continue
        events.append(event)
    return events


class ScheduledEventsPoller:
    """Polls IMDS Scheduled Events; the first Preempt event for this VM fires `on_preempt` once, and
    is then approved (the agent has stopped and reported its tasks: nothing is gained by waiting)."""

    def __init__(self, on_preempt: Callable[[str], None], stopping: threading.Event, url: str = IMDS_SCHEDULED_EVENTS,
                 vm_name: str | None = None, interval_s: float = 1.0) -> None:
        self.on_preempt = on_preempt
        self.stopping = stopping
        self.url = url
        self.vm_name = vm_name
        self.interval_s = interval_s
        self._thread = threading.Thread(target=self._run, name="scheduled-events", daemon=True)

    def poll_once(self) -> list[dict[str, Any]]:
        response = httpx.get(self.url, headers={"Metadata": "true"}, timeout=5.0, trust_env=False)
        response.raise_for_status()
        return preempt_events(response.json(), self.vm_name)

    def approve(self, event_id: str) -> None:
        """Tell the platform this VM is ready for the event (it may then proceed before NotBefore)."""
        response = httpx.post(self.url, headers={"Metadata": "true"}, json={"StartRequests": [{"EventId": event_id}]},
                              timeout=5.0, trust_env=False)
        response.raise_for_status()

    def start(self) -> ScheduledEventsPoller:
        self._thread.start()
        return self

    def _run(self) -> None:
        backoff = Backoff(initial=self.interval_s, cap=15.0)
        delay = 0.0
        while not self.stopping.wait(delay):
            try:
                events = self.poll_once()
            except (httpx.HTTPError, ValueError) as error:
                delay = backoff.next_delay()
                log.warning("scheduled events poll failed (%s); retrying in %.1f s", error, delay)
                continue
            backoff.reset()
            delay = self.interval_s
            if events:
                event_id = str(events[0].get("EventId"))
                self.on_preempt(f"scheduled event {event_id}")  # returns once the tasks are stopped and reported
                try:
                    self.approve(event_id)
                except httpx.HTTPError as error:  # the eviction then starts at NotBefore instead
                    log.warning("approving scheduled event %s failed: %s", event_id, error)
                return
