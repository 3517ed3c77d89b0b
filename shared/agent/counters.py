"""A cluster's ``performanceCountersSettings`` on its nodes: the node's counters (CPU, memory, disk,
network, GPUs) and each running task's process counters, as OpenTelemetry metrics.

They go to the cluster's Application Insights component (its instrumentation key, from the node
view) through the Azure Monitor exporter; where the agent writes its telemetry to files
(``BATCHAI_TELEMETRY_DIR``: the local stack, which sends nothing off this machine) they go there
instead, as ``metrics-counters-<node id>.jsonl``. Counters are observed
when the metrics are collected (every ``OTEL_METRIC_EXPORT_INTERVAL`` ms), from psutil: a task's
counters sum its process and every descendant.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import psutil
from docker.errors import APIError
from opentelemetry.metrics import CallbackOptions, Observation

from shared import telemetry

log = logging.getLogger(__name__)


def settings_of(cluster_view: Mapping[str, Any]) -> dict[str, Any] | None:
    """The view's ``performanceCountersSettings`` (None: the cluster has none)."""
    return ((cluster_view.get("nodeSetup") or {}).get("performanceCountersSettings")) or None


class PerformanceCounters:
    def __init__(self, node_id: str, cluster_key: str, gpus: int, disk_path: Path,
                 environ: Mapping[str, str] | None = None) -> None:
        self.node_id, self.cluster_key, self.gpus, self.disk_path = node_id, cluster_key, gpus, disk_path
        self.environ = os.environ if environ is None else environ
        self._lock = threading.Lock()
        self._providers: list[Any] = []
        self._tasks: dict[str, tuple[str, psutil.Process]] = {}  # assignment id -> (job key, process)
        self.enabled = False

    # --- what is observed -------------------------------------------------------------------------

    def watch(self, assignment_id: str, job_key: str, running: object) -> None:
        """Observe a started task's processes (when the counters are on)."""
        if not self.enabled:
            return
        pid = pid_of(running)
        if pid is None:
            return
        try:
            process = psutil.Process(pid)
        except psutil.NoSuchProcess:
            return  # it ended before it could be watched: it has no counters left
        with self._lock:
            self._tasks[assignment_id] = (job_key, process)

    def unwatch(self, assignment_id: str) -> None:
        with self._lock:
            self._tasks.pop(assignment_id, None)

    # --- where it goes ----------------------------------------------------------------------------

    def enable(self, settings: Mapping[str, Any]) -> None:
        """Start sending counters as `settings` say (idempotent: the first settings win until restart)."""
        with self._lock:
            if self.enabled:
                return
            self.enabled = True
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader

        reference = settings.get("appInsightsReference") or {}
        readers: list[MetricReader] = []
        directory = self.environ.get(telemetry.ENV_DIR)
        if directory:
            from opentelemetry.exporter.otlp.json.file import FileMetricExporter

            Path(directory).mkdir(parents=True, exist_ok=True)
            readers.append(PeriodicExportingMetricReader(
                FileMetricExporter(Path(directory) / f"metrics-counters-{self.node_id}.jsonl")))
        key = reference.get("instrumentationKey")
        if key and not directory:  # a local stack keeps its telemetry on this machine
            exporter = _azure_monitor_exporter(f"InstrumentationKey={key}")
            if exporter is not None:
                readers.append(PeriodicExportingMetricReader(exporter))
        if not readers:
            log.warning("performance counters are asked for, but there is nowhere to send them")
            return
        from opentelemetry.sdk.resources import Resource

        resource = Resource.create({"service.name": "batchai-node", "service.instance.id": self.node_id,
                                    "batchai.cluster": self.cluster_key,
                                    "batchai.appinsights.component": str((reference.get("component") or {})
                                                                         .get("id") or "")})
        provider = MeterProvider(resource=resource, metric_readers=readers)
        meter = provider.get_meter("batchai.counters")
        meter.create_observable_gauge("system.cpu.utilization", [self._cpu], unit="1")
        meter.create_observable_gauge("system.memory.usage", [self._memory], unit="By")
        meter.create_observable_gauge("system.filesystem.utilization", [self._disk], unit="1")
        meter.create_observable_counter("system.disk.io", [self._disk_io], unit="By")
        meter.create_observable_counter("system.network.io", [self._network_io], unit="By")
        meter.create_observable_gauge("batchai.node.gpu.count", [self._gpu_count], unit="1")
        meter.create_observable_counter("process.cpu.time", [self._task_cpu], unit="s")
        meter.create_observable_gauge("process.memory.usage", [self._task_memory], unit="By")
        meter.create_observable_gauge("process.thread.count", [self._task_threads], unit="1")
        self._providers.append(provider)
        log.info("performance counters of node %s are on", self.node_id)

    def shutdown(self) -> None:
        for provider in self._providers:
            provider.shutdown()

    # --- the node's counters ----------------------------------------------------------------------

    def _cpu(self, options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(psutil.cpu_percent(interval=None) / 100.0)

    def _memory(self, options: CallbackOptions) -> Iterable[Observation]:
        memory = psutil.virtual_memory()
        yield Observation(memory.total - memory.available, {"system.memory.state": "used"})
        yield Observation(memory.available, {"system.memory.state": "free"})

    def _disk(self, options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(psutil.disk_usage(str(self.disk_path)).percent / 100.0,
                          {"system.filesystem.mountpoint": str(self.disk_path)})

    def _disk_io(self, options: CallbackOptions) -> Iterable[Observation]:
        io = psutil.disk_io_counters()
        if io is not None:
            yield Observation(io.read_bytes, {"disk.io.direction": "read"})
            yield Observation(io.write_bytes, {"disk.io.direction": "write"})

    def _network_io(self, options: CallbackOptions) -> Iterable[Observation]:
        io = psutil.net_io_counters()
        yield Observation(io.bytes_recv, {"network.io.direction": "receive"})
        yield Observation(io.bytes_sent, {"network.io.direction": "transmit"})

    def _gpu_count(self, options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(self.gpus)

    # --- each task's process counters -------------------------------------------------------------

    def _task_trees(self) -> Iterable[tuple[dict[str, str], list[psutil.Process]]]:
        with self._lock:
            tasks = dict(self._tasks)
        for assignment_id, (job_key, root) in tasks.items():
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue  # ended since; unwatched when its task reports
            yield {"batchai.job": job_key, "batchai.assignment": assignment_id}, tree

    def _task_cpu(self, options: CallbackOptions) -> Iterable[Observation]:
        for attributes, tree in self._task_trees():
            yield Observation(_sum(tree, lambda p: sum(p.cpu_times()[:2])), attributes)

    def _task_memory(self, options: CallbackOptions) -> Iterable[Observation]:
        for attributes, tree in self._task_trees():
            yield Observation(_sum(tree, lambda p: p.memory_info().rss), attributes)

    def _task_threads(self, options: CallbackOptions) -> Iterable[Observation]:
        for attributes, tree in self._task_trees():
            yield Observation(_sum(tree, lambda p: p.num_threads()), attributes)


def _sum(tree: list[psutil.Process], read: Any) -> float:
    total = 0.0
    for process in tree:
        try:
            total += read(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue  # a process of the tree ended (or is not ours to read) between listing and reading
    return total


def _azure_monitor_exporter(connection_string: str) -> Any:
    try:
        from azure.monitor.opentelemetry.exporter import AzureMonitorMetricExporter
    except ImportError:
        log.warning("performance counters for Application Insights need azure-monitor-opentelemetry-exporter, "
                    "which this node does not have")
        return None
    return AzureMonitorMetricExporter(connection_string=connection_string)


def pid_of(running: object) -> int | None:
    """The pid at the root of a running task: a process's own, or a container's first process."""
    process = getattr(running, "process", None)
    if process is not None:
        return int(process.pid)
    container = getattr(running, "container", None)
    if container is None:
        return None
    try:
        container.reload()  # the State of a started container
    except APIError:
        return None  # gone or exiting (podman cannot inspect a container whose process is ending): nothing to watch
    pid = (container.attrs.get("State") or {}).get("Pid")
    return int(pid) if pid else None
