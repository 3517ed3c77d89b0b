"""The metric line protocol: what `batchai_metrics.log` writes is what the service parses back, in any
Python a task runs; malformed lines are not metrics; a reader resumes exactly where it stopped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from examples.digits import train
from shared.domain import metrics
from shared.domain.metrics import TASK_PYTHONPATH, parse, task_pythonpath


def run_python(code: str, tmp_path: Path, pythonpath: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = task_pythonpath(pythonpath)
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)


def test_task_pythonpath_holds_only_the_module() -> None:
    assert sorted(p.name for p in TASK_PYTHONPATH.iterdir() if p.name != "__pycache__") == ["batchai_metrics"]
    assert task_pythonpath(None) == str(TASK_PYTHONPATH)
    assert task_pythonpath(f"/a{os.pathsep}/b") == os.pathsep.join(["/a", "/b", str(TASK_PYTHONPATH)])
    assert task_pythonpath(task_pythonpath("/a")) == task_pythonpath("/a")


def test_logged_values_parse_back_exactly(tmp_path: Path) -> None:
    code = ("import batchai_metrics as m\n"
            "print('epoch 1', end='')\n"  # an unfinished line: the metric line still starts on its own
            "m.log('loss', 0.1 + 0.2)\n"
            "m.log('loss', 1e-300)\n"
            "m.log('acc/top-1', 3, step=7)\n"
            "m.log('loss', -2.5)\n"
            "print('done')\n")
    proc = run_python(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    parsed = parse(proc.stdout.encode(), 0, {}, final=True)
    assert [(p.name, p.step, p.value) for p in parsed.points] == [
        ("loss", 0, 0.1 + 0.2), ("loss", 1, 1e-300), ("acc/top-1", 7, 3.0), ("loss", 2, -2.5)]
    assert proc.stdout.startswith("epoch 1##batchai[metric name=loss")
    assert proc.stdout.endswith("done\n")


@pytest.mark.parametrize(("call", "error"), [
    ("m.log('', 1)", "metric name"), ("m.log('.hidden', 1)", "metric name"), ("m.log('a b', 1)", "metric name"),
    ("m.log('x' * 129, 1)", "metric name"), ("m.log('loss', float('nan'))", "finite number"),
    ("m.log('loss', float('inf'))", "finite number"), ("m.log('loss', '0.5')", "finite number"),
    ("m.log('loss', 1, step=-1)", "whole number"), ("m.log('loss', 1, step=1.5)", "whole number"),
    ("m.log('loss', 1, step=True)", "whole number"), ("m.log('loss', 1, step=2**31)", "whole number"),
])
def test_invalid_metrics_are_refused_before_anything_is_written(tmp_path: Path, call: str, error: str) -> None:
    proc = run_python(f"import batchai_metrics as m\n{call}\n", tmp_path)
    assert proc.returncode == 1 and "ValueError" in proc.stderr and error in proc.stderr
    assert proc.stdout == ""


def test_threads_never_split_a_line(tmp_path: Path) -> None:
    code = ("import threading, batchai_metrics as m\n"
            "def work(i):\n"
            "    for s in range(200):\n"
            "        m.log(f'w{i}', s * 0.5, step=s)\n"
            "ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]\n"
            "[t.start() for t in ts]; [t.join() for t in ts]\n")
    proc = run_python(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    points = parse(proc.stdout.encode(), 0, {}).points
    assert len(points) == 800
    for i in range(4):
        assert [(p.step, p.value) for p in points if p.name == f"w{i}"] == [(s, s * 0.5) for s in range(200)]


@pytest.mark.parametrize(("line", "expected"), [
    (b"##batchai[metric name=loss value=0.5 step=3]\n", [("loss", 3, 0.5)]),
    (b"prefix ##batchai[metric value=2 name=a]\n", [("a", 0, 2.0)]),
    (b"##batchai[metric name=a value=1]##batchai[metric name=a value=2]\n", [("a", 0, 1.0), ("a", 1, 2.0)]),
    (b"##batchai[metric name=a value=1e3 step=0]\n", [("a", 0, 1000.0)]),
    (b"##batchai[metric name=a value=nan]\n", []),
    (b"##batchai[metric name=a value=inf]\n", []),
    (b"##batchai[metric name=a value=x]\n", []),
    (b"##batchai[metric name=-a value=1]\n", []),
    (b"##batchai[metric name=a value=1 step=-1]\n", []),
    (b"##batchai[metric name=a value=1 step=2147483648]\n", []),
    (b"##batchai[metric name=a]\n", []),
    (b"##batchai[metric xname=a value=1]\n", []),
    (b"##batchai[metric name=a value=1\n", []),
    (b"##batchai[metrics name=a value=1]\n", []),
])
def test_lines(line: bytes, expected: list[tuple[str, int, float]]) -> None:
    assert [(p.name, p.step, p.value) for p in parse(line, 0, {}).points] == expected


def test_only_complete_lines_are_read_until_the_file_is_final() -> None:
    data = b"##batchai[metric name=a value=1]\nnoise\n##batchai[metric name=a value=2]"
    first = parse(data, 100, {})
    assert [(p.step, p.value, p.end) for p in first.points] == [(0, 1.0, 100 + 33)]
    assert first.consumed == len(b"##batchai[metric name=a value=1]\nnoise\n") and first.counts == {"a": 1}
    rest = parse(data[first.consumed:], 100 + first.consumed, first.counts, final=True)
    assert [(p.step, p.value) for p in rest.points] == [(1, 2.0)] and rest.counts == {"a": 2}
    assert rest.consumed == len(data) - first.consumed


def test_implicit_steps_number_the_points_of_their_series() -> None:
    data = b"##batchai[metric name=a value=1 step=10]\n##batchai[metric name=a value=2]\n"
    assert [p.step for p in parse(data, 0, {"a": 5}).points] == [10, 6]


def test_the_training_script_logs_loss_and_accuracy_per_epoch(tmp_path: Path) -> None:
    out = tmp_path / "MODEL"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=task_pythonpath(None), AZ_BATCHAI_OUTPUT_MODEL=str(out))
    proc = subprocess.run([sys.executable, train.__file__, "--epochs", "3"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    points = parse(proc.stdout.encode(), 0, {}).points
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [(p.step, round(p.value, 5)) for p in points if p.name == "loss"] == [
        (h["epoch"], h["loss"]) for h in history]
    assert [(p.step, round(p.value, 5)) for p in points if p.name == "test_accuracy"] == [
        (h["epoch"], h["test_accuracy"]) for h in history]
    assert metrics.valid_name("test_accuracy")
