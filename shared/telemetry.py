"""OpenTelemetry for every process of the service (the trigger host, the node agents): where traces,
metrics and logs go, and the few helpers the code calls. Nothing else in the project configures it.

Where telemetry goes is decided once per process, from its environment:
- ``BATCHAI_TELEMETRY_DIR`` (the local stack sets ``<state>/local/telemetry``): OTLP JSON lines, one
  file per signal and component: ``traces-<component>.jsonl``, ``metrics-<component>.jsonl``,
  ``logs-<component>.jsonl`` (one line per export batch).
- ``APPLICATIONINSIGHTS_CONNECTION_STRING`` (Azure; the Bicep sets it on the Function App): the Azure
  Monitor OpenTelemetry distro, when it is installed (see README, "Telemetry").
- neither: the API's no-op providers; every helper is then a cheap no-op.

Trace context crosses processes as a W3C ``traceparent`` string: the API's request header, the job
document (``internal.traceparent``), schedule kicks, ``assign`` messages and node events.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

ENV_DIR = "BATCHAI_TELEMETRY_DIR"
ENV_AZURE = "APPLICATIONINSIGHTS_CONNECTION_STRING"
LOGGERS = ("shared", "functions", "batchai")  # the project's own loggers (not the SDKs' wire logs)
SCOPE = "batchai"

_lock = threading.Lock()
_configured: str | None = None  # the component this process was configured as
_propagator = TraceContextTextMapPropagator()
_instruments: dict[str, Any] = {}
_shutdown: list[Any] = []


def telemetry_dir(state_dir: Path | str) -> Path:
    """Where the local stack under `state_dir` writes its telemetry."""
    return Path(state_dir) / "local" / "telemetry"


def configure(component: str, environ: Mapping[str, str] | None = None) -> None:
    """Set this process's providers up as `component` ("host", "agent-<node id>"); once per process."""
    global _configured
    env = os.environ if environ is None else environ
    with _lock:
        if _configured is not None:
            return
        _configured = component
        resource = _resource(component)
        if env.get(ENV_DIR):
            _to_files(Path(env[ENV_DIR]), component, resource)
        elif env.get(ENV_AZURE):
            _to_azure_monitor(env[ENV_AZURE], resource)


def _resource(component: str) -> Any:
    from opentelemetry.sdk.resources import Resource

    kind, _, instance = component.partition("-")
    return Resource.create({"service.name": f"batchai-{kind}", "service.namespace": "batchai",
                            "service.instance.id": instance or f"{kind}-{os.getpid()}", "batchai.component": component})


def _to_files(directory: Path, component: str, resource: Any) -> None:
    from opentelemetry.exporter.otlp.json.file import FileMetricExporter, FileSpanExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    directory.mkdir(parents=True, exist_ok=True)
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(FileSpanExporter(directory / f"traces-{component}.jsonl")))
    trace.set_tracer_provider(tracer_provider)
    meter_provider = MeterProvider(resource=resource, metric_readers=[
        PeriodicExportingMetricReader(FileMetricExporter(directory / f"metrics-{component}.jsonl"))])
    metrics.set_meter_provider(meter_provider)
    _logs_to_file(directory / f"logs-{component}.jsonl", resource)
    _shutdown.extend([tracer_provider, meter_provider])


def _logs_to_file(path: Path, resource: Any) -> None:
    from opentelemetry.exporter.otlp.json.file._log_exporter import FileLogExporter
    from opentelemetry.instrumentation.logging.handler import LoggingHandler
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(BatchLogRecordProcessor(FileLogExporter(path)))
    handler = LoggingHandler(level=logging.INFO, logger_provider=provider)
    for name in LOGGERS:
        logging.getLogger(name).addHandler(handler)
    _shutdown.append(provider)


def _to_azure_monitor(connection_string: str, resource: Any) -> None:
    try:
        from azure.monitor.opentelemetry import configure_azure_monitor
    except ImportError:
        logging.getLogger(__name__).warning("%s is set but azure-monitor-opentelemetry is not installed: "
                                            "no telemetry is sent", ENV_AZURE)
        return
    configure_azure_monitor(connection_string=connection_string, resource=resource, logger_name="shared")


def flush() -> None:
    """Export what is buffered now (before a process exits, or where a test reads the files)."""
    for provider in list(_shutdown):
        provider.force_flush()


# --- traces -------------------------------------------------------------------------------------

def _tracer() -> trace.Tracer:
    if _configured is None:
        configure("host")
    return trace.get_tracer(SCOPE)


def context_of(traceparent: str | None) -> Context | None:
    """The context a traceparent string continues (None: none given, or not a valid one)."""
    if not traceparent:
        return None
    ctx = _propagator.extract({"traceparent": traceparent})
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


@contextmanager
def span(name: str, parent: str | None = None, kind: SpanKind = SpanKind.INTERNAL, links: list[str] | None = None,
         **attributes: Any) -> Iterator[Span]:
    """A span, current inside the block: a child of `parent` (a traceparent) when one is given, else
    of the current span. `links` are traceparents of related traces (a pass serves many jobs)."""
    link_list = [Link(trace.get_current_span(c).get_span_context())
                 for c in (context_of(tp) for tp in links or []) if c is not None]
    with _tracer().start_as_current_span(name, context=context_of(parent), kind=kind, links=link_list,
                                         attributes={k: v for k, v in attributes.items() if v is not None}) as s:
        yield s


def traceparent() -> str:
    """The current span as a W3C traceparent ("" outside any recorded span)."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent", "")


# --- metrics ------------------------------------------------------------------------------------

def _instrument(kind: str, name: str, unit: str, description: str) -> Any:
    key = f"{kind}:{name}"
    found = _instruments.get(key)
    if found is None:
        if _configured is None:
            configure("host")
        meter = metrics.get_meter(SCOPE)
        create = {"histogram": meter.create_histogram, "gauge": meter.create_gauge}[kind]
        found = _instruments.setdefault(key, create(name, unit=unit, description=description))
    return found


def record(name: str, value: float, unit: str = "s", description: str = "", **attributes: Any) -> None:
    """One measurement of a distribution (a duration, a latency)."""
    _instrument("histogram", name, unit, description).record(value, attributes)


def gauge(name: str, value: float, unit: str = "1", description: str = "", **attributes: Any) -> None:
    """The current value of something counted (queue depth, nodes in a state)."""
    _instrument("gauge", name, unit, description).set(value, attributes)


@contextmanager
def timed_pass(name: str) -> Iterator[None]:
    """A timer's pass: its span (a trace of its own) and its duration in ``batchai.timer.pass.duration``."""
    began = time.monotonic()
    try:
        with span(f"{name} pass", **{"batchai.pass": name}):
            yield
    finally:
        record("batchai.timer.pass.duration", time.monotonic() - began, description="One pass of a timer.",
               **{"batchai.pass": name})
