"""Event triggers beyond HTTP: batch-scoring manifests (blob trigger), job submissions from other
systems (queue trigger), the kicks that advance a scoring run when one of its jobs ends (queue
trigger, the service's own storage), and the timers that advance scoring runs and publish
submission replies.

Triggers only: parse the input, call one service. Transient errors propagate so that the host
retries (blob: 5 tries then webjobs-blobtrigger-poison; queue: maxDequeueCount then the poison
queue); refusals are recorded by the services and complete normally.

Ingress lives in the data account, the one users write to, never in the service's own: both
triggers bind the connection `DATA_CONNECTION` (the app setting ``BatchaiData``, a connection
string; in Azure ``BatchaiData__blobServiceUri`` / ``BatchaiData__queueServiceUri`` with the app's
identity).

- BATCHAI_SCORING_SCHEDULE: Azure "*/10 * * * * *" (every 10 s); local "*/2 * * * * *".
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import azure.functions as func

from shared.adapters import storage
from shared.config import Settings
from shared.services import scoring, scoring_start, submissions

DATA_CONNECTION = "BatchaiData"
SCHEDULES: dict[str, dict[str, str]] = {
    "BATCHAI_SCORING_SCHEDULE": {"azure": "*/10 * * * * *", "local": "*/2 * * * * *"},
}

bp = func.Blueprint()


def _version(blob: func.InputStream, data: bytes) -> str:
    """The blob version: its ETag (or version id); a content digest if the host passed neither."""
    props = {k.lower(): v for k, v in (getattr(blob, "blob_properties", None) or {}).items()}
    version = props.get("etag") or props.get("versionid")
    return str(version) if version else "sha256:" + hashlib.sha256(data).hexdigest()


@bp.function_name("scoring_manifest")
@bp.blob_trigger(arg_name="blob", path=storage.C_TRIGGERS + "/{subscription}/{resourceGroup}/{workspace}/{name}.json",
                 connection=DATA_CONNECTION)
def scoring_manifest(blob: func.InputStream) -> None:
    name = (blob.name or "").removeprefix(storage.C_TRIGGERS + "/")
    data = blob.read()
    scoring_start.start_from_blob(Settings.from_env(), name, _version(blob, data), data, datetime.now(UTC),
                                  scoring_start.authorization_of(blob.metadata))


@bp.function_name("job_submission")
@bp.queue_trigger(arg_name="msg", queue_name=storage.Q_SUBMISSIONS, connection=DATA_CONNECTION)
def job_submission(msg: func.QueueMessage) -> None:
    now = datetime.now(UTC)
    delivery = submissions.Delivery(body=msg.get_body().decode("utf-8", errors="replace"), message_id=msg.id or "",
                                    inserted=msg.insertion_time or now, dequeue_count=msg.dequeue_count or 1)
    submissions.handle(Settings.from_env(), delivery, now)


@bp.function_name("scoring_run_kick")
@bp.queue_trigger(arg_name="msg", queue_name=storage.Q_SCORING, connection="AzureWebJobsStorage")
def scoring_run_kick(msg: func.QueueMessage) -> None:
    scoring.on_kick(Settings.from_env(), msg.get_body().decode("utf-8", errors="replace"), datetime.now(UTC))


@bp.function_name("scoring_runs_tick")
@bp.timer_trigger(arg_name="timer", schedule="%BATCHAI_SCORING_SCHEDULE%", run_on_startup=False,
                  use_monitor=False)
def scoring_runs_tick(timer: func.TimerRequest) -> None:
    scoring.reconcile_all(Settings.from_env(), datetime.now(UTC))


@bp.function_name("submission_replies_tick")
@bp.timer_trigger(arg_name="timer", schedule="%BATCHAI_SCORING_SCHEDULE%", run_on_startup=False,
                  use_monitor=False)
def submission_replies_tick(timer: func.TimerRequest) -> None:
    submissions.reconcile_replies(Settings.from_env(), datetime.now(UTC))
