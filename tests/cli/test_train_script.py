"""The demo's training script, run as a job would run it: a process with the AZ_BATCHAI_* output variable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from examples.digits import train

SCRIPT = Path(train.__file__)


def test_training_writes_a_model_that_classifies_digits(tmp_path: Path) -> None:
    out = tmp_path / "outputs" / "MODEL"
    env = dict(os.environ, AZ_BATCHAI_OUTPUT_MODEL=str(out), AZ_BATCHAI_TASK_INDEX="0")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--epochs", "6"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    epochs = [line for line in proc.stdout.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in epochs] == [f"{i}/6" for i in range(1, 7)]

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 6 and len(metrics["history"]) == 6
    assert metrics["test_accuracy"] > 0.9
    assert metrics["history"][-1]["loss"] < metrics["history"][0]["loss"]

    params = train.load_model(out / "model.npz")
    _, _, x_test, y_test = train.load_split()
    assert abs(train.accuracy(params, x_test, y_test) - metrics["test_accuracy"]) < 1e-9


def test_untrained_network_is_near_chance() -> None:
    """The accuracy check above could fail: an untrained network does not pass it."""
    import numpy as np

    _, _, x_test, y_test = train.load_split()
    params = train.init_params(np.random.default_rng(1))
    assert train.accuracy(params, x_test, y_test) < 0.5
