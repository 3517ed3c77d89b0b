"""The dashboard as a person uses it, in headless Chromium against the whole local stack (nodes are agent
processes): sign in on the issuer's page, open a running job and see its stdout grow and its metric chart
fill without reloading the page, then the demo's training job: its stdout, a loss chart whose points are
exactly what the metrics API returns, its output files (one downloaded through the page, byte for byte),
and the cluster's node-count chart."""

from __future__ import annotations

import os
import shutil
import ssl
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.mgmt.batchai import models
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from examples.digits import train
from shared.localstack.token import OWNER_NAME
from tests.e2e.conftest import Stack
from tests.polling import wait_until

EPOCHS = 6
# The script blocks on its gate, a FIFO, until the test opens it (`open_gate`), or 600 s have passed.
LIVE_SCRIPT = textwrap.dedent("""
    import contextlib, os, signal, sys
    import batchai_metrics
    gate = sys.argv[1]
    print("first line", flush=True)
    batchai_metrics.log("progress", 0.25)
    with contextlib.suppress(FileExistsError):
        os.mkfifo(gate, 0o666)
    signal.signal(signal.SIGALRM, lambda *_: sys.exit("the test never opened the gate"))
    signal.alarm(600)
    with open(gate) as waiting:
        waiting.read()
    signal.alarm(0)
    print("second line", flush=True)
    batchai_metrics.log("progress", 0.75)
""")


def open_gate(gate: Path) -> None:
    """Let the live script past its gate: open the FIFO for writing (possible once the script waits on
    it) and close it."""
    def opened() -> int | None:
        try:
            return os.open(gate, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # not made yet (ENOENT), or no reader yet (ENXIO)
            return None
    os.close(wait_until(opened, 60, "the live script to wait at its gate"))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(local_stack: dict[str, Any]) -> Iterator[Stack]:
    yield Stack(local_stack)


@pytest.fixture(scope="module")
def world(stack: Stack) -> dict[str, str]:
    ws = f"dash{uuid.uuid4().hex[:6]}"
    stack.workspace(ws)
    stack.manual_cluster(ws, "c", 1)
    stack.client.experiments.begin_create(stack.rg, ws, "e").result()
    return {"ws": ws}


def page_of(stack: Stack, ws: str, *tail: str) -> str:
    return (f"{stack.endpoint['url']}/dashboard/subscriptions/{stack.sub}/resourceGroups/{stack.rg}/workspaces/{ws}"
            + "".join(f"/{t}" for t in tail))


def signed_in(stack: Stack, start: Callable[[list[str]], WebDriver]) -> WebDriver:
    """A browser signed in as the stack's owner, through the issuer's sign-in page."""
    driver = start([stack.endpoint["url"], stack.endpoint["issuer"]])
    driver.get(f"{stack.endpoint['url']}/dashboard/")
    field = wait_until(lambda: driver.find_elements(By.ID, "principal"), 30, "the issuer's sign-in page")[0]
    field.send_keys(OWNER_NAME)
    driver.find_element(By.ID, "sign-in").click()
    wait_until(lambda: driver.find_elements(By.ID, "signed-in-as"), 30, "the dashboard after signing in")
    assert driver.find_element(By.ID, "signed-in-as").text == OWNER_NAME
    assert driver.get_cookie("__Host-batchai-session")["httpOnly"]
    return driver


# Read in one script each: htmx swaps the live parts while the test looks at them.
def text_of(driver: WebDriver, element_id: str) -> str:
    return str(driver.execute_script(
        "const e = document.getElementById(arguments[0]); return e ? e.textContent : '';", element_id))


def chart_points(driver: WebDriver, chart_id: str, line: str | None = None) -> list[tuple[float, float]]:
    selector = f"#{chart_id} g.line" + (f"[data-label='{line}']" if line else "") + " circle.point"
    found = driver.execute_script("return Array.from(document.querySelectorAll(arguments[0]))"
                                  ".map(c => [c.getAttribute('data-x'), c.getAttribute('data-y')]);", selector)
    return [(float(x), float(y)) for x, y in found]


def api_points(stack: Stack, ws: str, job: str, name: str) -> list[tuple[float, float]]:
    path = (f"/subscriptions/{stack.sub}/resourceGroups/{stack.rg}/providers/Microsoft.BatchAI/workspaces/{ws}"
            f"/experiments/e/jobs/{job}/metrics")
    r = httpx.get(stack.endpoint["url"] + path, params={"api-version": "2018-05-01", "name": name},
                  headers={"Authorization": f"Bearer {stack.endpoint['token']}"},
                  verify=ssl.create_default_context(cafile=stack.endpoint["ca_file"]), timeout=30)
    assert r.status_code == 200, r.text
    return [(float(p["step"]), float(p["value"])) for s in r.json()["value"] for p in s["points"]]


def test_a_running_jobs_stdout_and_metrics_grow_live(stack: Stack, world: dict[str, str],
                                                     browser_factory: Callable[[list[str]], WebDriver]) -> None:
    ws = world["ws"]
    here, there = stack.scratch("live")
    (here / "live.py").write_text(LIVE_SCRIPT)
    stack.submit(ws, "e", "live", "c", f"{stack.python} {there}/live.py {there}/go")
    driver = signed_in(stack, browser_factory)
    driver.get(page_of(stack, ws, "experiments", "e", "jobs", "live"))
    wait_until(lambda: "first line" in text_of(driver, "log-text"), 180, "the job's first stdout line on the page")
    assert "second line" not in text_of(driver, "log-text")
    wait_until(lambda: len(chart_points(driver, "metric-progress")) == 1, 60, "the first point of the metric chart")
    driver.execute_script("window.stillThisPage = true")
    open_gate(here / "go")
    wait_until(lambda: "second line" in text_of(driver, "log-text"), 60, "the second stdout line, live")
    wait_until(lambda: chart_points(driver, "metric-progress") == [(0.0, 0.25), (1.0, 0.75)], 60,
               "the metric chart's second point, live")
    wait_until(lambda: "succeeded" in text_of(driver, "job-status"), 60, "the job's state to show it succeeded")
    assert driver.execute_script("return window.stillThisPage === true"), "the page was reloaded"
    assert chart_points(driver, "metric-progress") == api_points(stack, ws, "live", "progress")


def test_the_demo_job_its_loss_chart_its_files_and_the_clusters_chart(
        stack: Stack, world: dict[str, str], browser_factory: Callable[[list[str]], WebDriver]) -> None:
    ws = world["ws"]
    here, there = stack.scratch("scripts")
    shutil.copyfile(train.__file__, here / "train.py")
    stack.submit(ws, "e", "train", "c", f"{stack.python} {there}/train.py --epochs {EPOCHS}",
                 output_directories=[models.OutputDirectory(id="MODEL", path_prefix="$AZ_BATCHAI_MOUNT_ROOT/out")])
    job = stack.wait_job(ws, "e", "train", 240)
    assert job.execution_state == "succeeded", job.execution_info

    driver = signed_in(stack, browser_factory)
    driver.get(page_of(stack, ws, "experiments", "e", "jobs", "train"))
    wait_until(lambda: f"epoch {EPOCHS}/{EPOCHS}" in text_of(driver, "log-text"), 60, "the job's stdout")
    wait_until(lambda: len(chart_points(driver, "metric-loss")) == EPOCHS, 60, "the loss chart")
    loss = api_points(stack, ws, "train", "loss")
    assert [step for step, _ in loss] == [float(e) for e in range(1, EPOCHS + 1)]
    assert chart_points(driver, "metric-loss") == loss
    assert len(chart_points(driver, "metric-test_accuracy")) == EPOCHS

    link = wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "a.download[data-path='metrics.json']"), 60,
                      "the output files' links")[0]
    assert driver.find_elements(By.CSS_SELECTOR, "a.download[data-path='model.npz']")
    link.click()
    downloaded = Path(driver.downloads) / "metrics.json"
    wait_until(downloaded.exists, 30, "the browser's download of metrics.json")
    expected = stack.output_files(ws, "e", "train", "MODEL")["metrics.json"].download_url
    assert downloaded.read_bytes() == httpx.get(expected, timeout=30).content

    driver.get(page_of(stack, ws))
    chart = wait_until(lambda: chart_points(driver, "nodes-c", "nodes"), 60, "the cluster's node-count chart")
    current = stack.client.clusters.get(stack.rg, ws, "c").current_node_count
    assert chart[-1][1] == float(current) == 1.0
    assert driver.find_elements(By.CSS_SELECTOR, "#nodes-c g.line[data-label='queued jobs']")
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == [], severe


def test_terminating_a_job_from_its_page(stack: Stack, world: dict[str, str],
                                         browser_factory: Callable[[list[str]], WebDriver]) -> None:
    """A change made by a click: htmx sends the session's CSRF token, the person confirms, the job stops."""
    ws = world["ws"]
    here, there = stack.scratch("stop")
    (here / "live.py").write_text(LIVE_SCRIPT)
    stack.submit(ws, "e", "stopme", "c", f"{stack.python} {there}/live.py {there}/never")
    driver = signed_in(stack, browser_factory)
    driver.get(page_of(stack, ws, "experiments", "e", "jobs", "stopme"))
    wait_until(lambda: "first line" in text_of(driver, "log-text"), 180, "the job to run")
    driver.find_element(By.ID, "terminate").click()
    wait_until(lambda: _alert(driver), 10, "the confirmation").accept()
    wait_until(lambda: "failed" in text_of(driver, "job-status"), 90, "the terminated job to end as failed")
    job = stack.client.jobs.get(stack.rg, ws, "e", "stopme")
    assert job.execution_state == "failed" and not driver.find_elements(By.ID, "terminate")


def _alert(driver: WebDriver) -> Any:
    from selenium.common.exceptions import NoAlertPresentException

    try:
        return driver.switch_to.alert
    except NoAlertPresentException:
        return None
