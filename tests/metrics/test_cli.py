"""`batchai job metrics`: the job's metric values as a table, or as the API's series in json."""

from __future__ import annotations

import json

from tests.cli.conftest import Run, batchai, state_dir  # noqa: F401 - the CLI tests' fixtures
from tests.metrics.conftest import Job


def test_job_metrics_lists_every_value_and_filters_by_name(job: Job, batchai: Run) -> None:  # noqa: F811
    job.start()
    job.append(b"##batchai[metric name=loss value=0.5]\n##batchai[metric name=acc value=0.25 step=4]\n")
    group = job.path.split("/")[4]
    shown = batchai("job", "metrics", "ws", "e", "j", "-g", group, "-o", "json")
    assert json.loads(shown.stdout) == [
        {"name": "acc", "source": "stdout.txt", "points": [{"step": 4, "value": 0.25}]},
        {"name": "loss", "source": "stdout.txt", "points": [{"step": 0, "value": 0.5}]}]
    table = batchai("job", "metrics", "-w", "ws", "-e", "e", "-n", "j", "-g", group, "--metric", "loss").stdout
    assert "loss" in table and "0.5" in table and "acc" not in table
    missing = batchai("job", "metrics", "ws", "e", "nope", "-g", group, check=False)
    assert missing.exit_code == 1 and "JobNotFound" in missing.stderr
