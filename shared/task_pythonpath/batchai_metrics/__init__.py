"""batchai_metrics: a job's metrics, logged as Azure ML's `run.log` logged them.

    import batchai_metrics
    batchai_metrics.log("loss", 0.25, step=3)   # step: optional; without it, 0, 1, 2, ... per name

Every batchai task finds this module on its PYTHONPATH. Each call writes one line to the process's
standard output, `##batchai[metric name=loss value=0.25 step=3]`, which the service reads back from
the job's streamed stdout: jobs in any other language log metrics by printing the same line. Names are
1 to 128 characters of letters, digits and `_ . - /` (starting with a letter, digit or `_`); values are
finite numbers; steps are whole numbers from 0 to 2**31 - 1.

No dependencies beyond the standard library (it runs in any task's Python, 3.7 or later).
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import re
import sys
import threading

__all__ = ["log"]

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-/]{0,127}\Z")
_MAX_STEP = 2**31 - 1
_lock = threading.Lock()
_logged: dict = {}  # name -> how many values this process logged under it


def log(name: str, value: float, step: int | None = None) -> None:
    """Log `value` of metric `name` (at `step`; default: the number of values logged under `name` so far)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"metric name must be 1 to 128 of letters, digits and _ . - / (not starting with . - /): "
                         f"{name!r}")
    if not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ValueError(f"metric value must be a finite number: {value!r}")
    whole = isinstance(step, numbers.Integral) and not isinstance(step, bool)
    if step is not None and not (whole and 0 <= step <= _MAX_STEP):
        raise ValueError(f"metric step must be a whole number from 0 to 2**31 - 1: {step!r}")
    with _lock:
        count = _logged.get(name, 0)
        _logged[name] = count + 1
        line = f"##batchai[metric name={name} value={float(value)!r} step={count if step is None else int(step)}]\n"
        _write(line.encode("ascii"))


def _write(data: bytes) -> None:
    """One write of the whole line to file descriptor 1, after what `print` buffered, so that the line
    is never split by other output of this process."""
    with contextlib.suppress(AttributeError, OSError, ValueError):  # no stdout object, or closed: fd 1 may be open
        sys.stdout.flush()
    while data:
        written = os.write(1, data)
        data = data[written:]
