"""The dashboard without a browser: sign-in through the issuer's page, a session cookie that is HttpOnly,
Secure and SameSite, pages filtered by the signed-in principal's roles, CSRF on every change."""

from __future__ import annotations

from tests.dashboard.conftest import World, csrf_of, sign_in


def test_signing_in_sets_a_strict_session_cookie_and_shows_the_workspaces(world: World) -> None:
    http = sign_in(world.endpoint, world.people["reader"])
    cookie = next(c for c in http.cookies.jar if c.name == "__Host-batchai-session")
    assert cookie.secure and cookie.path == "/" and cookie.has_nonstandard_attr("HttpOnly")
    home = http.get("/dashboard/")
    assert home.status_code == 200, home.text
    assert world.page(world.ws) in home.text and world.people["reader"] in home.text
    assert "default-src 'self'" in home.headers["content-security-policy"]


def test_each_page_shows_what_the_principals_roles_let_them_read(world: World) -> None:
    reader = sign_in(world.endpoint, world.people["reader"])
    ws_page = reader.get(world.page(world.ws))
    assert ws_page.status_code == 200 and 'id="clusters"' in ws_page.text and world.page(f"{world.ws}/experiments/e") \
        in ws_page.text
    assert 'id="runs"' in ws_page.text  # Reader reads everything
    cards = reader.get(world.page(world.ws, "clusters"))
    assert cards.status_code == 200 and 'id="cluster-c"' in cards.text
    jobs = reader.get(world.page(f"{world.ws}/experiments/e"))
    assert jobs.status_code == 200 and 'id="job-j"' in jobs.text
    job = reader.get(world.page(world.job))
    assert job.status_code == 200 and 'id="job-status"' in job.text
    assert "fewer nodes than it needs" in job.text  # queued on a cluster of no nodes: the scheduler's reason
    assert "fewer nodes than it needs" in jobs.text
    assert 'id="terminate"' not in job.text and 'id="delete"' not in job.text and 'id="log"' not in job.text
    assert reader.get(world.page(world.job, "log")).status_code == 403  # Reader may not list output files
    assert reader.get(world.page(world.job, "metrics")).status_code == 200

    submitter = sign_in(world.endpoint, world.people["submitter"])
    job = submitter.get(world.page(world.job))
    assert 'id="terminate"' in job.text and 'id="delete"' not in job.text and 'id="log"' in job.text
    assert 'id="runs"' not in submitter.get(world.page(world.ws)).text  # no scoring runs read for submitters
    assert submitter.get(world.page(world.ws, "runs")).status_code == 403


def test_a_principal_without_roles_sees_nothing(world: World) -> None:
    nobody = sign_in(world.endpoint, world.people["nobody"])
    home = nobody.get("/dashboard/")
    assert 'id="no-workspaces"' in home.text and world.page(world.ws) not in home.text
    refused = nobody.get(world.page(world.job))
    assert refused.status_code == 403 and "AuthorizationFailed" not in refused.text
    assert "does not have authorization to perform action" in refused.text


def test_changes_need_the_sessions_csrf_token_and_the_right_role(world: World) -> None:
    job = world.new_job()
    owner = sign_in(world.endpoint, world.people["owner"])
    page = owner.get(world.page(job))
    token = csrf_of(page.text)
    target = world.page(job, "terminate")
    assert owner.post(target).status_code == 403
    assert owner.post(target, headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert owner.post(target, headers={"X-CSRF-Token": token, "Sec-Fetch-Site": "cross-site"}).status_code == 403
    done = owner.post(target, headers={"X-CSRF-Token": token, "HX-Request": "true"})
    assert done.status_code == 204 and done.headers["hx-redirect"] == world.page(job)
    delete = world.page(job, "delete")
    assert owner.post(delete, headers={"X-CSRF-Token": token}).status_code == 303
    reader = sign_in(world.endpoint, world.people["reader"])
    reader_token = csrf_of(reader.get("/dashboard/").text)
    assert reader.post(target, headers={"X-CSRF-Token": reader_token}).status_code == 403  # no terminate right
    assert reader.post(target, headers={"X-CSRF-Token": token}).status_code == 403  # another session's token


def test_signing_out_ends_the_session(world: World) -> None:
    http = sign_in(world.endpoint, world.people["reader"])
    token = csrf_of(http.get("/dashboard/").text)
    assert http.post("/dashboard/signout", data={"csrf": "forged"}).status_code == 403
    out = http.post("/dashboard/signout", data={"csrf": token})
    assert out.status_code == 200 and 'id="sign-in-again"' in out.text
    again = http.get("/dashboard/")
    assert again.status_code == 303 and again.headers["location"].startswith("/dashboard/signin")
    live = http.get(world.page(world.job, "status"), headers={"HX-Request": "true"})
    assert live.status_code == 401 and live.headers["hx-redirect"].startswith("/dashboard/signin")


def test_a_sign_in_finishes_only_in_the_browser_that_started_it(world: World) -> None:
    import httpx

    from tests.dashboard.conftest import trust

    started = httpx.Client(base_url=world.endpoint["url"], verify=trust(world.endpoint), timeout=30)
    to_issuer = started.get("/dashboard/signin?next=https://elsewhere.example/")
    state = dict(httpx.URL(to_issuer.headers["location"]).params)["state"]
    other = httpx.Client(base_url=world.endpoint["url"], verify=trust(world.endpoint), timeout=30)
    refused = other.get(f"/dashboard/auth/callback?state={state}&code=x")
    assert refused.status_code == 400 and "__Host-batchai-session" not in refused.headers.get("set-cookie", "")


def test_after_sign_in_only_dashboard_pages_are_returned_to() -> None:
    from shared.dashboard.pages import safe_next

    assert safe_next("/dashboard/subscriptions/x") == "/dashboard/subscriptions/x"
    for bad in ("https://evil.example/", "//evil.example/", "/dashboard//evil", "/api", "/dashboard/\\x", ""):
        assert safe_next(bad) == "/dashboard/"


def test_static_files_are_only_the_dashboards_own(world: World) -> None:
    http = sign_in(world.endpoint, world.people["reader"])
    htmx = http.get("/dashboard/static/htmx-2.0.11.min.js")
    assert htmx.status_code == 200 and htmx.text.startswith("var htmx=")
    assert http.get("/dashboard/static/README.md").status_code == 404
    assert http.get("/dashboard/static/..%2Fpages.py").status_code == 404


def test_every_dashboard_route_has_a_rule_or_signs_people_in() -> None:
    from fastapi.routing import APIRoute

    from functions.api.access import DASHBOARD_RULES
    from functions.dashboard import OPEN_PATHS, site

    routes = {(m, r.path) for r in site.routes if isinstance(r, APIRoute) for m in r.methods}
    assert {k for k in routes if k[1] not in OPEN_PATHS} == set(DASHBOARD_RULES)


def test_scoring_runs_show_progress_and_refused_submissions_and_usages_show_to_who_may_read_them(
        world: World, storage_conn: str) -> None:
    from shared.adapters import storage
    from shared.adapters.resource_store import ResourceStore
    from shared.domain.keys import WorkspaceRef
    from shared.localstack.token import OWNER_NAME

    sub, rg = world.ws.split("/")[2], world.ws.split("/")[4]
    ref = WorkspaceRef(sub, rg, "ws")
    progress = {"items": {"total": 10, "succeeded": 4, "failed": 1, "pending": 5},
                "jobs": {"total": 3, "succeeded": 1, "failed": 0, "running": 2, "retries": 0}}
    run = {"id": f"{world.ws}/batchScoringRuns/r1", "name": "r1",
           "type": "Microsoft.BatchAI/workspaces/batchScoringRuns",
           "properties": {"state": "scoring", "stateTransitionTime": "2026-03-01T09:00:00.000Z",
                          "creationTime": "2026-03-01T09:00:00.000Z", "progress": progress, "errors": []},
           "internal": {}}
    runs = ResourceStore(storage_conn, storage.T_SCORING_RUNS)
    if runs.get(ref.child_pk, "r1") is None:
        runs.insert(ref.child_pk, "r1", run)
    storage.table(storage_conn, storage.T_REJECTED).upsert_entity({
        "PartitionKey": ref.pk, "RowKey": f"20260301T090000000000Z-{world.run}", "code": "InvalidJobDefinition",
        "message": f"refused-{world.run}", "workspace": "ws", "experiment": "e", "jobName": "bad",
        "recordedAt": "2026-03-01T09:00:00.000Z"})

    reader = sign_in(world.endpoint, world.people["reader"])
    shown = reader.get(world.page(world.ws, "runs")).text
    assert 'id="run-r1"' in shown
    assert '<progress max="10" value="5">' in shown and '<progress max="3" value="1">' in shown
    home = reader.get("/dashboard/").text
    assert f"refused-{world.run}" in home  # Reader on the workspace the submission named
    assert "Usage against limits" not in home  # usages are read at the subscription
    nobody = sign_in(world.endpoint, world.people["nobody"]).get("/dashboard/").text
    assert f"refused-{world.run}" not in nobody
    owner = sign_in(world.endpoint, OWNER_NAME).get("/dashboard/").text
    assert "Usage against limits" in owner and "<meter" in owner and f"refused-{world.run}" in owner
