"""When a task's start is reported: a task-started after the delay, or the start carried by its end."""

from __future__ import annotations

import threading

from shared.agent.start_report import StartReport
from tests.polling import wait_until

AT = "2026-01-01T00:00:00+00:00"


def test_a_task_that_ends_before_the_delay_reports_its_start_with_its_end() -> None:
    sent: list[str] = []
    report = StartReport(sent.append, delay_s=3600)
    report.started(AT)
    assert report.close() == AT
    assert sent == []
    assert report.close() is None  # once


def test_a_task_still_running_after_the_delay_sends_task_started_once_and_its_end_carries_none() -> None:
    sent: list[str] = []
    report = StartReport(sent.append, delay_s=0)
    report.started(AT)
    wait_until(lambda: sent, 10, what="the deferred task-started")
    assert report.close() is None
    assert sent == [AT]


def test_the_end_waits_for_a_task_started_under_way() -> None:
    sending, release = threading.Event(), threading.Event()
    sent: list[str] = []

    def slow_send(at: str) -> None:
        sending.set()
        release.wait(30)
        sent.append(at)

    report = StartReport(slow_send, delay_s=0)
    report.started(AT)
    assert sending.wait(30)
    closed: list[str | None] = []
    closer = threading.Thread(target=lambda: closed.append(report.close()))
    closer.start()
    closer.join(0.2)
    assert closed == [] and closer.is_alive()  # task-exited is not sent before task-started went
    release.set()
    closer.join(30)
    assert closed == [None] and sent == [AT]


def test_a_task_that_never_started_reports_no_start() -> None:
    assert StartReport(lambda at: None).close() is None


def test_a_task_started_that_could_not_be_sent_leaves_the_start_to_the_end() -> None:
    tried: list[str] = []

    def refused(at: str) -> None:
        tried.append(at)
        raise OSError("storage is away")

    report = StartReport(refused, delay_s=0)
    report.started(AT)
    wait_until(lambda: tried, 10, what="the attempt to send task-started")
    assert report.close() == AT
