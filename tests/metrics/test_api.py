"""The job metrics API: what the job's tasks wrote on stdout, read as it grows, once per point however many
readers ask at once; a task that starts its stdout anew starts its metrics anew; only callers who may read
the job see them; documented in the OpenAPI schema."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from shared.emulator.issuer import Issuer
from shared.localstack.token import principal_token
from tests.metrics.conftest import API, Job, client
from tests.polling import wait_until


def points(series: list[dict], name: str, source: str = "stdout.txt") -> list[tuple[int, float]]:
    found = [s for s in series if s["name"] == name and s["source"] == source]
    assert len(found) <= 1
    return [(p["step"], p["value"]) for p in found[0]["points"]] if found else []


def test_a_job_with_no_output_yet_has_no_metrics(job: Job) -> None:
    assert job.metrics() == []


def test_metrics_grow_with_stdout_and_a_partial_line_waits_for_its_end(job: Job) -> None:
    job.start()
    job.append(b"epoch 1\n##batchai[metric name=loss value=0.9 step=1]\n##batchai[metric name=acc value=0.5 ")
    assert points(job.metrics(), "loss") == [(1, 0.9)] and points(job.metrics(), "acc") == []
    job.append(b"step=1]\n##batchai[metric name=loss value=0.4 step=2]\n")
    series = job.metrics()
    assert points(series, "loss") == [(1, 0.9), (2, 0.4)] and points(series, "acc") == [(1, 0.5)]
    assert [s["name"] for s in series] == ["acc", "loss"]
    assert job.metrics("&name=loss") == [s for s in series if s["name"] == "loss"]
    assert job.metrics("&name=missing") == []


def test_each_task_is_its_own_series(job: Job) -> None:
    job.start("stdout.txt")
    job.start("stdout-1.txt")
    job.start("stdout-job_prep.txt")
    job.append(b"##batchai[metric name=loss value=1]\n##batchai[metric name=loss value=2]\n", "stdout.txt")
    job.append(b"##batchai[metric name=loss value=3]\n", "stdout-1.txt")
    job.append(b"##batchai[metric name=loss value=4]\n", "stdout-job_prep.txt")
    series = job.metrics()
    assert points(series, "loss") == [(0, 1.0), (1, 2.0)]
    assert points(series, "loss", "stdout-1.txt") == [(0, 3.0)]
    assert {s["source"] for s in series} == {"stdout.txt", "stdout-1.txt"}


def test_many_points_are_stored_in_several_transactions_and_steps_continue(job: Job) -> None:
    job.start()
    job.append(b"".join(b"##batchai[metric name=x value=%d]\n" % i for i in range(250)))
    assert points(job.metrics(), "x") == [(i, float(i)) for i in range(250)]
    job.append(b"##batchai[metric name=x value=-1]\n")
    assert points(job.metrics(), "x")[-1] == (250, -1.0)


def test_concurrent_readers_store_each_point_once(job: Job) -> None:
    job.start()
    job.append(b"".join(b"##batchai[metric name=y value=%d]\n" % i for i in range(300)))
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda _: job.metrics("&name=y"), range(6)))
    final = job.metrics("&name=y")
    assert points(final, "y") == [(i, float(i)) for i in range(300)]
    for answer in answers:  # each saw a consistent prefix of the series, never a duplicate
        seen = points(answer, "y")
        assert seen == [(i, float(i)) for i in range(len(seen))]


def test_a_restarted_task_starts_its_metrics_anew(job: Job) -> None:
    job.start()
    job.append(b"##batchai[metric name=loss value=5]\n##batchai[metric name=loss value=6]\n")
    assert points(job.metrics(), "loss") == [(0, 5.0), (1, 6.0)]
    job.blob("stdout.txt").delete_blob()
    job.start()  # the requeued task's stdout
    job.append(b"##batchai[metric name=loss value=7]\n")
    assert points(job.metrics(), "loss") == [(0, 7.0)]
    job.blob("stdout.txt").delete_blob()
    job.start()  # again, and already longer than what was read: the bytes before the cursor differ
    job.append(b"##batchai[metric name=loss value=8]\n##batchai[metric name=loss value=9]\n")
    assert points(job.metrics(), "loss") == [(0, 8.0), (1, 9.0)]


def test_bad_names_and_missing_jobs_are_arm_errors(job: Job) -> None:
    r = job.http.get(f"{job.path}/metrics?{API}&name=a%20b")
    assert r.status_code == 400 and r.json()["error"]["code"] == "InvalidParameter"
    r = job.http.get(f"{job.path}x/metrics?{API}")
    assert r.status_code == 404 and r.json()["error"]["code"] == "JobNotFound"
    assert job.http.get(f"{job.path}/metrics").status_code == 400  # no api-version


def test_only_callers_who_may_read_the_job_see_its_metrics(job: Job, api_endpoint: dict[str, str],
                                                           api_issuer: Issuer) -> None:
    job.start()
    job.append(b"##batchai[metric name=loss value=1]\n")
    with client(api_endpoint, principal_token(api_issuer, "metrics-stranger")) as stranger:
        r = stranger.get(f"{job.path}/metrics?{API}")
    assert r.status_code == 403 and r.json()["error"]["code"] == "AuthorizationFailed"
    assert "Microsoft.BatchAI/workspaces/experiments/jobs/read" in r.json()["error"]["message"]
    assert job.http.get(f"{job.path}/metrics?{API}", headers={"Authorization": ""}).status_code == 401


def test_openapi_documents_the_metrics_route() -> None:
    from functions.http_api import api

    paths = api.openapi()["paths"]
    route = next(p for p in paths if p.endswith("/jobs/{jobName}/metrics"))
    get = paths[route]["get"]
    assert "200" in get["responses"] and any(p["name"] == "name" for p in get["parameters"])
    schema = api.openapi()["components"]["schemas"]["MetricSeries"]
    assert set(schema["properties"]) == {"name", "source", "points"}


def test_the_last_line_counts_without_its_newline_once_the_job_ended(job: Job) -> None:
    job.start()
    job.append(b"##batchai[metric name=z value=1]\n##batchai[metric name=z value=2]")
    assert points(job.metrics(), "z") == [(0, 1.0)]
    assert job.http.post(f"{job.path}/terminate?{API}").status_code in (200, 202)
    wait_until(lambda: job.http.get(f"{job.path}?{API}").json()["properties"]["executionState"] in ("succeeded",
                                                                                                   "failed"),
               30, "the terminated job to end")
    assert points(job.metrics(), "z") == [(0, 1.0), (1, 2.0)]
