"""A long training job, as the sweep test needs one: prints the sweep parameters it got in its
environment, runs the demo's training script (``hold_if_diverged.py TRAIN_SCRIPT ARGS...``) and, when
its model diverged (final test accuracy below 0.5), stays running as a long training run would, until
it is stopped, or HOLD_S seconds pass (then it exits 0, and the test that expected the policy to stop it
fails). A run that learned exits at once."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
import tempfile
from pathlib import Path

HOLD_S = 900
DIVERGED_BELOW = 0.5


def main() -> int:
    script, args = Path(sys.argv[1]), sys.argv[2:]
    for name in sorted(n for n in os.environ if n.startswith("AZ_BATCHAI_PARAM_")):
        print(f"{name}={os.environ[name]}", flush=True)
    spec = importlib.util.spec_from_file_location("train", script)
    assert spec is not None and spec.loader is not None
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    output = Path(tempfile.mkdtemp(dir=os.environ.get("AZ_BATCHAI_JOB_TEMP")))
    code = int(train.main([*args, "--output", str(output)]) or 0)
    accuracy = json.loads((output / "metrics.json").read_text())["test_accuracy"]
    if code or accuracy >= DIVERGED_BELOW:
        return code
    print(f"diverged (test accuracy {accuracy:.4f}): running on until stopped", flush=True)
    signal.signal(signal.SIGALRM, lambda *_: sys.exit(0))
    signal.alarm(HOLD_S)
    while True:  # until the sweep's policy stops the job, or the alarm ends it
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
