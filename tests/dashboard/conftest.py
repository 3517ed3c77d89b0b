"""Fixtures of the dashboard tests: the dashboard served with the API (in process, over https), people who
sign in through the session issuer's sign-in page, and a world to look at (a workspace with a cluster, an
experiment and a job, and roles for some of the people)."""

from __future__ import annotations

import os
import re
import ssl
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.emulator.issuer import Issuer
from shared.localstack.token import principal_token
from tests.authz.conftest import CLUSTER, assign, job_body
from tests.authz.conftest import client as api_client

API = "api-version=2018-05-01"


def sign_in(endpoint: dict[str, str], principal: str, groups: str = "", next_path: str = "/dashboard/"
            ) -> httpx.Client:
    """A browser-like client (cookies, no automatic redirects) signed in as `principal` through the
    issuer's sign-in page, the way a person fills it in."""
    http = httpx.Client(base_url=endpoint["url"], verify=trust(endpoint), timeout=30)
    r = http.get(next_path)
    assert r.status_code == 303 and r.headers["location"].startswith("/dashboard/signin?next=")
    r = http.get(r.headers["location"])
    assert r.status_code == 303
    page = http.get(r.headers["location"])  # the issuer's page
    assert page.status_code == 200, page.text
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text))
    form = {k: v.replace("&amp;", "&") for k, v in hidden.items()}
    r = http.post(str(page.url), data={**form, "principal": principal, "groups": groups})
    assert r.status_code == 302, r.text
    r = http.get(r.headers["location"])  # the dashboard's callback
    assert r.status_code == 303, r.text
    assert r.headers["location"] == next_path
    return http


def trust(endpoint: dict[str, str]) -> ssl.SSLContext:
    """The API's CA and the issuer's (the session's issuer has TLS files of its own)."""
    context = ssl.create_default_context(cafile=endpoint["ca_file"])
    context.load_verify_locations(os.environ["BATCHAI_TOKEN_ISSUER_CA_FILE"])
    return context


def csrf_of(page: str) -> str:
    found = re.search(r'"X-CSRF-Token": "([^"]+)"', page)
    assert found, "the page carries no CSRF token"
    return found.group(1)


@dataclass
class World:
    endpoint: dict[str, str]
    issuer: Issuer
    run: str
    ws: str  # the workspace's ARM id
    people: dict[str, str] = field(default_factory=dict)  # who -> principal name

    def page(self, arm_id: str, *tail: str) -> str:
        return "/dashboard" + arm_id.replace("/providers/Microsoft.BatchAI", "") + "".join(f"/{t}" for t in tail)

    @property
    def job(self) -> str:
        return f"{self.ws}/experiments/e/jobs/j"

    def new_job(self) -> str:
        """A job of its own for a test that changes it (queued: the cluster has no nodes)."""
        path = f"{self.ws}/experiments/e/jobs/t{uuid.uuid4().hex[:8]}"
        with api_client(self.endpoint, self.endpoint["token"]) as owner:
            assert owner.put(f"{path}?{API}", json=job_body(self.ws)).status_code == 200
        return path


@pytest.fixture(scope="session")
def world(api_endpoint: dict[str, str], api_issuer: Issuer) -> Iterator[World]:
    run = uuid.uuid4().hex[:6]
    sub = api_endpoint["subscription_id"]
    ws = f"/subscriptions/{sub}/resourceGroups/dash-{run}/providers/Microsoft.BatchAI/workspaces/ws"
    w = World(api_endpoint, api_issuer, run, ws)
    with api_client(api_endpoint, api_endpoint["token"]) as owner:
        assert owner.put(f"{ws}?{API}", json={"location": "local"}).status_code == 200
        assert owner.put(f"{ws}/clusters/c?{API}", json=CLUSTER).status_code == 200
        assert owner.put(f"{ws}/experiments/e?{API}", json={}).status_code == 200
        assert owner.put(f"{ws}/experiments/e/jobs/j?{API}", json=job_body(ws)).status_code == 200
        for who, role in (("reader", "Reader"), ("submitter", "BatchAI Job Submitter"), ("owner", "Owner")):
            w.people[who] = f"{who}-{run}"
            oid = principal_claims(api_issuer, w.people[who])["oid"]
            from shared.domain import rbac
            assign(owner, ws, oid, rbac.role_by_name(role))
        w.people["nobody"] = f"nobody-{run}"
    yield w


def principal_claims(issuer: Issuer, name: str) -> dict:
    import jwt
    return jwt.decode(principal_token(issuer, name), options={"verify_signature": False})


# --- the browser ------------------------------------------------------------------------------------

@pytest.fixture()
def browser_factory(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
                    ) -> Iterator[Callable[[list[str]], Any]]:
    """Starts Debian's headless Chromium trusting the given https servers; skips (loudly, with the reason)
    only where Chromium cannot start. The driver is closed after the test; on failure its screenshot and
    page source are kept under the session's base temp directory (browser-artifacts/)."""
    from tests.dashboard import browser

    drivers: list[Any] = []

    def start(trusted_urls: list[str]) -> Any:
        try:
            driver = browser.start(tmp_path / "profile", tmp_path / "downloads", trusted_urls)
        except browser.ChromiumUnavailable as why:
            pytest.fail(f"the browser tests need Debian's chromium and chromium-driver: {why}")
        driver.downloads = tmp_path / "downloads"
        drivers.append(driver)
        request.node.browser_drivers = drivers
        return driver

    (tmp_path / "downloads").mkdir()
    request.node.artifacts = tmp_path_factory.getbasetemp() / "browser-artifacts"
    yield start
    for driver in drivers:
        driver.quit()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    for i, driver in enumerate(getattr(item, "browser_drivers", [])):
        directory = item.artifacts
        directory.mkdir(parents=True, exist_ok=True)
        stem = re.sub(r"[^\w.-]+", "_", item.nodeid)[-150:] + f"-{i}"
        driver.save_screenshot(str(directory / f"{stem}.png"))
        (directory / f"{stem}.html").write_text(driver.page_source)
        report.sections.append(("browser artifacts", f"{directory / stem}.png and .html ({driver.current_url})"))
