"""Timer and HTTP triggers through the local host process."""

from __future__ import annotations

import httpx

from tests.localhost.conftest import SampleHost, wait_until


def _ticks(host: SampleHost) -> list[tuple[float, float]]:
    """(start, end) of each completed tick, in order."""
    events = host.records("timer")
    ticks, start = [], None
    for e in events:
        if e["event"] == "start":
            assert start is None, "a tick started while the previous one ran"
            start = e["at"]
        else:
            assert start is not None
            ticks.append((start, e["at"]))
            start = None
    return ticks


def test_timer_fires_repeatedly_on_a_one_second_schedule_and_never_overlaps(sample_host: SampleHost) -> None:
    # %SAMPLE_TIMER_SCHEDULE% resolves to "*/1 * * * * *"; each tick takes 1.5 s. Three ticks come
    # well within the deadline only if each follows at the next occurrence, not after a skipped minute.
    ticks = wait_until(lambda: t if len(t := _ticks(sample_host)) >= 3 else None, 30, "three timer ticks")
    for (_, end), (next_start, _) in zip(ticks, ticks[1:], strict=False):
        assert next_start >= end
    assert not any(r["past_due"] for r in sample_host.records("timer", event="start"))


def test_http_route_answers_over_https_with_the_local_ca(sample_host: SampleHost) -> None:
    r = httpx.get(f"{sample_host.url}/api/hello/bob", verify=sample_host.tls_context())
    assert r.status_code == 200 and r.text == "hello bob"
    unprefixed = httpx.get(f"{sample_host.url}/hello/bob", verify=sample_host.tls_context())
    assert unprefixed.status_code == 404  # host.json routePrefix is "api"
