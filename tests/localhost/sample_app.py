"""A small Functions app for testing the local trigger host: a queue trigger that fails on demand, a
timer that takes a while, a blob trigger and an HTTP route. Every invocation appends one JSON line to
the file named by SAMPLE_RECORD_FILE, so tests observe what the host did."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


def record(**fields: Any) -> None:
    line = (json.dumps({"at": time.time(), "pid": os.getpid(), **fields}) + "\n").encode()
    fd = os.open(os.environ["SAMPLE_RECORD_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


@app.queue_trigger(arg_name="msg", queue_name="%SAMPLE_QUEUE%", connection="AzureWebJobsStorage")
def on_message(msg: func.QueueMessage) -> None:
    text = msg.get_body().decode(errors="replace")
    try:
        fail = json.loads(text).get("fail")
    except (ValueError, AttributeError):
        fail = None
    record(fn="queue", id=msg.id, body=text, dequeue_count=msg.dequeue_count,
           insertion_time=msg.insertion_time.isoformat() if msg.insertion_time else None,
           has_pop_receipt=bool(msg.pop_receipt))
    if fail == "always" or (fail == "once" and msg.dequeue_count == 1):
        raise RuntimeError(f"failing on demand ({fail}, attempt {msg.dequeue_count})")


@app.timer_trigger(arg_name="timer", schedule="%SAMPLE_TIMER_SCHEDULE%", run_on_startup=False, use_monitor=False)
def on_timer(timer: func.TimerRequest) -> None:
    record(fn="timer", event="start", past_due=timer.past_due)
    time.sleep(float(os.environ.get("SAMPLE_TIMER_WORK_S", "0")))  # simulated work longer than the period
    record(fn="timer", event="end")


@app.blob_trigger(arg_name="blob", path="%SAMPLE_CONTAINER%/{name}", connection="AzureWebJobsStorage")
def on_blob(blob: func.InputStream) -> None:
    content = blob.read().decode()
    record(fn="blob", name=blob.name, length=blob.length, content=content, uri=blob.uri)
    if content.startswith("fail"):
        raise RuntimeError("failing on demand")


@app.route(route="hello/{who}", methods=["GET"])
def hello(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(f"hello {req.route_params['who']}", status_code=200)
