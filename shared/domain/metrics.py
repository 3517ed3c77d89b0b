"""Job metrics: the line protocol jobs write on stdout, and where the `batchai_metrics` module lives. Pure.

A task logs a metric by writing ``##batchai[metric name=NAME value=VALUE step=STEP]`` on its standard
output (`batchai_metrics.log` writes exactly that; a program in any language can print it). The marker
may stand anywhere in a line, so a line that other output ran into still counts. NAME is 1..128 of
letters, digits and ``_ . - /`` (not starting with ``. - /``); VALUE a finite decimal number; STEP, when
given, a whole number from 0 to 2^31-1. A point without a step gets the number of points its series had before
it in that file (0, 1, ...), as Azure ML numbered the values a run logged under one name. Malformed
lines are not metrics and are ignored.

`parse` reads a chunk of a stdout file from a byte offset and returns the points of its complete
lines, each with the offset just past its line, so a reader resumes exactly where it stopped.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

NAME_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_.\-/]{0,127}"
_NAME = re.compile(NAME_PATTERN)
_LINE = re.compile(rb"##batchai\[metric ([^\]\n]{0,400})\]")
_FIELD = re.compile(r"(?:^|\s)(name|value|step)=(\S+)")
_STEP = re.compile(r"[0-9]{1,10}")
MAX_STEP = 2**31 - 1

# The directory every task gets on its PYTHONPATH: it holds the `batchai_metrics` module and nothing else.
TASK_PYTHONPATH = Path(__file__).resolve().parents[1] / "task_pythonpath"


def task_pythonpath(current: str | None) -> str:
    """A task's PYTHONPATH: its own entries first, then the directory of `batchai_metrics`."""
    entries = [p for p in (current or "").split(os.pathsep) if p]
    return os.pathsep.join([*entries, str(TASK_PYTHONPATH)] if str(TASK_PYTHONPATH) not in entries else entries)


def valid_name(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


@dataclass(frozen=True)
class Point:
    name: str
    step: int
    value: float
    end: int  # the byte offset just past the point's line in its file
    index: int = 0  # its place among the metric lines of that line (usually 0)


@dataclass
class Parsed:
    points: list[Point] = field(default_factory=list)
    consumed: int = 0  # bytes of the chunk read (complete lines; all of it when `final`)
    counts: dict[str, int] = field(default_factory=dict)  # points per name in the file, after the chunk


def fields_of(text: str) -> tuple[str, float, int | None] | None:
    """(name, value, step) of a metric line's fields, or None when they do not make a metric."""
    found: dict[str, str] = {}
    for m in _FIELD.finditer(text):
        found.setdefault(m.group(1), m.group(2))
    name, raw_value, raw_step = found.get("name"), found.get("value"), found.get("step")
    if name is None or raw_value is None or not valid_name(name):
        return None
    try:
        value = float(raw_value)
    except ValueError:
        return None
    if not math.isfinite(value):
        return None
    if raw_step is None:
        return name, value, None
    if not _STEP.fullmatch(raw_step) or int(raw_step) > MAX_STEP:
        return None
    return name, value, int(raw_step)


def parse(chunk: bytes, start: int, counts: Mapping[str, int], final: bool = False) -> Parsed:
    """The points of `chunk`, which starts at byte `start` of its file. Only complete lines are read
    unless `final` (the file is complete: its last line may lack a newline)."""
    parsed = Parsed(counts=dict(counts))
    end_of_lines = chunk.rfind(b"\n") + 1
    readable = len(chunk) if final else end_of_lines
    position = 0
    while position < readable:
        newline = chunk.find(b"\n", position, readable)
        line_end = readable if newline < 0 else newline + 1
        line = chunk[position:line_end]
        for index, m in enumerate(_LINE.finditer(line)):
            metric = fields_of(m.group(1).decode("ascii", errors="replace"))
            if metric is None:
                continue
            name, value, step = metric
            count = parsed.counts.get(name, 0)
            parsed.counts[name] = count + 1
            parsed.points.append(Point(name, count if step is None else step, value, start + line_end, index))
        position = line_end
    parsed.consumed = readable
    return parsed
