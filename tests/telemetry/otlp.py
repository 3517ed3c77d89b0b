"""Reading the local stack's telemetry files: OTLP JSON lines (one export batch a line)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def _value(v: dict[str, Any]) -> Any:
    (kind, value), = v.items()
    return int(value) if kind == "intValue" else value


def attributes(items: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {a["key"]: _value(a["value"]) for a in items or []}


def _batches(directory: Path, pattern: str) -> list[dict[str, Any]]:
    batches = []
    for path in sorted(directory.glob(pattern)):
        for line in path.read_text().splitlines():
            if line.endswith("}"):  # a line being written is not whole yet
                batches.append(json.loads(line))
    return batches


@dataclass
class Span:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: int
    attributes: dict[str, Any]


def spans(directory: Path) -> list[Span]:
    found = []
    for batch in _batches(directory, "traces-*.jsonl"):
        for rs in batch["resourceSpans"]:
            service = attributes(rs["resource"]["attributes"])["service.name"]
            for scope in rs["scopeSpans"]:
                for s in scope["spans"]:
                    found.append(Span(service, s["name"], s["traceId"], s["spanId"], s.get("parentSpanId", ""),
                                      s.get("kind", 0), attributes(s.get("attributes"))))
    return found


@dataclass
class Point:
    service: str
    metric: str
    resource: dict[str, Any]
    attributes: dict[str, Any]
    value: float  # a gauge's or sum's value; a histogram's count
    time: int  # ns since the epoch


def points(directory: Path, pattern: str = "metrics-*.jsonl") -> list[Point]:
    found = []
    for batch in _batches(directory, pattern):
        for rm in batch["resourceMetrics"]:
            resource = attributes(rm["resource"]["attributes"])
            for scope in rm["scopeMetrics"]:
                for m in scope["metrics"]:
                    kind = next(k for k in ("gauge", "sum", "histogram") if k in m)
                    for p in m[kind]["dataPoints"]:
                        value = int(p["count"]) if kind == "histogram" else p.get("asDouble", p.get("asInt"))
                        found.append(Point(resource["service.name"], m["name"], resource,
                                           attributes(p.get("attributes")), float(value), int(p["timeUnixNano"])))
    return found


def log_records(directory: Path) -> list[tuple[str, str, str]]:
    """(service, trace id, body) of every log record."""
    found = []
    for batch in _batches(directory, "logs-*.jsonl"):
        for rl in batch["resourceLogs"]:
            service = attributes(rl["resource"]["attributes"])["service.name"]
            for scope in rl["scopeLogs"]:
                for r in scope["logRecords"]:
                    found.append((service, r.get("traceId", ""), str(_value(r["body"])) if r.get("body") else ""))
    return found
