"""Storage clients and the names of every table, queue and blob container the service uses.

One place owns the names so that the API, the trigger bindings and the node agent agree.
Clients are cached per connection string; creation of tables/queues/containers is idempotent.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from functools import lru_cache
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableClient, TableServiceClient
from azure.storage.blob import BlobServiceClient, ContainerClient
from azure.storage.queue import QueueClient, QueueServiceClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from shared.adapters import queue_signals

# Tables (the truth).
T_WORKSPACES = "workspaces"
T_EXPERIMENTS = "experiments"
T_CLUSTERS = "clusters"
T_FILESERVERS = "fileservers"
T_JOBS = "jobs"
T_SCHED = "sched"  # one partition per cluster: nodes, pending index, assignments
T_OPERATIONS = "operations"
T_SCORING_RUNS = "scoringruns"  # batch-scoring runs: "{sub}|{rg}|{ws}" / run id (+ an index of active runs)
T_SUBMISSIONS = "submissions"  # accepted queue submissions awaiting a reply when their job ends
T_REJECTED = "rejectedsubmissions"  # queue submissions refused, with the reason: "{sub}|{rg}" / time-message id
T_DATA_CONTAINERS = "datacontainers"  # data containers registered by workspaces: "claim" / container name
T_ROLE_ASSIGNMENTS = "roleassignments"  # "{sub}" / "ra|{name}" (+ "key|{hash}": one per principal, role and scope)
T_OPERATION_CALLERS = "operationcallers"  # "op" / operation id: who started it (only they may read its result)
T_NODE_TOKENS = "nodetokens"  # hashes of node tokens (shared.adapters.node_tokens): cluster key / node id
T_NODE_EXECS = "nodeexecs"  # commands run on nodes through their agents (shared.services.node_exec): cluster key / id
T_JOB_LINKS = "joblinks"  # live job arrays ("array" / parent key) and waiting dependents ("dep|<job key>" / key)
T_SWEEPS = "sweeps"  # parameter sweeps (shared.services.sweeps): experiment key / sweep (+ an index of live sweeps)
T_JOIN_TOKENS = "jointokens"  # hashes of bring-your-own join tokens (shared.adapters.join_tokens): cluster key / name
TABLES = (T_WORKSPACES, T_EXPERIMENTS, T_CLUSTERS, T_FILESERVERS, T_JOBS, T_SCHED, T_OPERATIONS, T_SCORING_RUNS,
          T_SUBMISSIONS, T_REJECTED, T_DATA_CONTAINERS,
          T_ROLE_ASSIGNMENTS, T_OPERATION_CALLERS, T_NODE_TOKENS, T_NODE_EXECS,
          T_JOB_LINKS, T_SWEEPS, T_JOIN_TOKENS)

# Queues (work and events). Messages are base64 text, as host.json's messageEncoding says.
Q_KICKS = "schedule-kicks"  # {"cluster": cluster_key}: run a scheduling pass
Q_EVENTS = "node-events"  # node agent -> service (see shared.domain.messages)
Q_SUBMISSIONS = "job-submissions"  # other systems submit jobs here
Q_SCORING = "scoring-kicks"  # {"run": run index row, "job": name}: a job of a batch-scoring run ended
QUEUES = (Q_KICKS, Q_EVENTS, Q_SUBMISSIONS, Q_SCORING)
NODE_QUEUE_PREFIX = "node-"  # one assignment queue per node: node-<node id>

# Blob containers.
C_OUTPUTS = "batchai-outputs"  # stdouterr and output directories with no mount
C_TRIGGERS = "batchai-triggers"  # batch-scoring manifests
C_HEARTBEATS = "batchai-heartbeats"  # one empty blob per node, rewritten by its agent (see heartbeat_blob)
C_WHEELHOUSE = "batchai-wheelhouse"  # the node agent and its dependencies, as wheels (nodes read them by SAS)
SCORING_WORK_PREFIX = "bsr-"  # one work container per scoring job: bsr-<run hash>-<chunk>-<attempt>
CONTAINERS = (C_OUTPUTS, C_TRIGGERS, C_HEARTBEATS, C_WHEELHOUSE)


def node_queue_name(node_id: str) -> str:
    return f"{NODE_QUEUE_PREFIX}{node_id}".lower()


def heartbeat_prefix(cluster_key: str) -> str:
    """The folder of a cluster's heartbeat blobs in C_HEARTBEATS (one listing reads them all)."""
    return f"{hashlib.sha256(cluster_key.encode()).hexdigest()[:16]}/"


def heartbeat_blob(cluster_key: str, node_id: str) -> str:
    """A node's heartbeat in C_HEARTBEATS: its agent rewrites it (metadata ``assignments``, comma-separated,
    and ``pid``); the storage server's ``Last-Modified`` is the time of the last beat."""
    return f"{heartbeat_prefix(cluster_key)}{node_id}"


_LOOPBACK = re.compile(r"^http://(127\.0\.0\.1|localhost|\[::1\])[:/]", re.I)


@lru_cache(maxsize=16)
def client_options(conn: str) -> dict[str, Any]:
    """SDK client options for a connection. Storage on this machine over plain http (Azurite) is
    reached without the environment's proxy, netrc and CA bundle settings, which `requests` would
    otherwise look up on disk for every call."""
    parts = dict(p.split("=", 1) for p in conn.split(";") if "=" in p)
    endpoints = [v for k, v in parts.items() if k.endswith("Endpoint")]
    local = parts.get("UseDevelopmentStorage", "").lower() == "true" or (
        bool(endpoints) and all(_LOOPBACK.match(e) for e in endpoints))
    return {"use_env_settings": False} if local else {}


@lru_cache(maxsize=8)
def table_service(conn: str) -> TableServiceClient:
    return TableServiceClient.from_connection_string(conn, **client_options(conn))


@lru_cache(maxsize=8)
def queue_service(conn: str) -> QueueServiceClient:
    return QueueServiceClient.from_connection_string(conn, **client_options(conn))


@lru_cache(maxsize=8)
def blob_service(conn: str) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(conn, **client_options(conn))


@lru_cache(maxsize=256)
def table(conn: str, name: str) -> TableClient:
    return table_service(conn).get_table_client(name)


@lru_cache(maxsize=1024)
def queue(conn: str, name: str) -> QueueClient:
    return QueueClient.from_connection_string(
        conn, name,
        message_encode_policy=TextBase64EncodePolicy(),
        message_decode_policy=TextBase64DecodePolicy(),
        raw_response_hook=queue_signals.response_hook(name),  # wakes listeners of this process
        **client_options(conn),
    )


@lru_cache(maxsize=64)
def container(conn: str, name: str) -> ContainerClient:
    return blob_service(conn).get_container_client(name)


def ensure_queue(conn: str, name: str) -> QueueClient:
    client = queue(conn, name)
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()
    return client


def ensure_all(conn: str) -> None:
    """Create every table, queue and container the service needs (idempotent)."""
    tables = table_service(conn)
    for name in TABLES:
        tables.create_table_if_not_exists(name)
    for name in QUEUES:
        ensure_queue(conn, name)
        ensure_queue(conn, f"{name}-poison")
    blobs = blob_service(conn)
    for name in CONTAINERS:
        with contextlib.suppress(ResourceExistsError):
            blobs.create_container(name)


def output_prefix(workspace: str, experiment: str, job: str, segment: str) -> str:
    """Where a job's stdouterr and output directories live in C_OUTPUTS when no mount holds them:
    ``{prefix}/stdouterr/stdout.txt`` (task 0; task i>0 writes ``stdout-{i}.txt``), likewise stderr,
    ``{prefix}/outputs/{OUTPUT ID}/...`` for each output directory, and job preparation output
    beside the task's in ``{prefix}/stdouterr/stdout-job_prep.txt`` (``-{i}`` for task i>0)."""
    return f"{workspace.lower()}/{experiment.lower()}/{job.lower()}/{segment}"


def setup_output_prefix(workspace: str, cluster: str, node_id: str) -> str:
    """Where a node's setup task output lives in C_OUTPUTS: ``{prefix}/stdout.txt`` and ``stderr.txt``."""
    return f"{workspace.lower()}/clusters/{cluster.lower()}/nodes/{node_id}/setup"
