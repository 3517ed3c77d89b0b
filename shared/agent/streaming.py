"""Streaming a task's stdout/stderr files to append blobs while it runs.

Each file is followed from the offset already uploaded; every append names that offset
(``appendpos``), so a retry after a lost response never duplicates bytes, and a storage outage
only delays the upload: the bytes stay in the file and are sent when storage answers again. The
blobs come from an `OutputBlobs` (the node's access to its task's output prefix), asked again at
every flush so that scoped access is renewed while a long task runs. The files lie where the task
writes: a file is read only when it is a regular file reached without following a link (a job that
swaps in a link or a FIFO gets nothing uploaded from it).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from shared.agent.confine import open_file
from shared.agent.node_storage import OutputBlobs
from shared.agent.retry import NO_SDK_RETRY, Backoff, GaveUp, is_transient

log = logging.getLogger(__name__)

MAX_BLOCK = 4 * 1024 * 1024  # an append block holds at most 4 MiB

_creators = ThreadPoolExecutor(max_workers=4, thread_name_prefix="log-create")


@dataclass
class Stream:
    path: Path
    blob: str
    uploaded: int = 0
    created: bool = False


class LogStreamer:
    """Uploads new bytes of each file every `interval_s` on its own thread; `close` flushes the rest."""

    def __init__(self, blobs: OutputBlobs, files: list[tuple[Path, str]], interval_s: float = 1.0,
                 give_up: threading.Event | None = None) -> None:
        self.blobs = blobs
        self.streams = [Stream(path, blob) for path, blob in files]
        self.interval_s = interval_s
        self.give_up = give_up or threading.Event()
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._failure: Exception | None = None
        self._thread = threading.Thread(target=self._run, name="log-streamer", daemon=True)

    def start(self) -> LogStreamer:
        self._thread.start()
        return self

    def _create(self, stream: Stream) -> None:
        """Start the stream's blob afresh (a new run of a task starts its log anew); the container is
        created only when it is missing."""
        blob = self.blobs.blob(stream.blob)
        try:
            blob.create_append_blob(**NO_SDK_RETRY)
        except ResourceNotFoundError:
            self.blobs.create_container()
            blob.create_append_blob(**NO_SDK_RETRY)
        stream.created = True

    def _flush_stream(self, stream: Stream) -> None:
        blob = self.blobs.blob(stream.blob)
        if not stream.created:
            self._create(stream)
        while True:
            try:
                with open_file(stream.path, "rb") as f:
                    f.seek(stream.uploaded)
                    chunk = f.read(MAX_BLOCK)
            except OSError:  # missing, or not a regular file reached without a link: nothing to send
                return
            if not chunk:
                return
            try:
                blob.append_block(chunk, appendpos_condition=stream.uploaded, **NO_SDK_RETRY)
            except ResourceNotFoundError:
                # The blob is gone (deleted, or storage lost it): start it again from the file's beginning.
                blob.create_append_blob(**NO_SDK_RETRY)
                stream.uploaded = 0
                continue
            except HttpResponseError as error:
                if error.error_code != "AppendPositionConditionNotMet":
                    raise
                # An earlier append succeeded but its answer was lost: continue from what the blob holds.
                stream.uploaded = blob.get_blob_properties(**NO_SDK_RETRY).size
                continue
            stream.uploaded += len(chunk)

    def flush(self) -> None:
        with self._lock:
            self.blobs.prepare([stream.blob for stream in self.streams])
            new = [stream for stream in self.streams if not stream.created]
            if len(new) > 1:  # stdout and stderr blobs are created side by side
                list(_creators.map(self._create, new))
            for stream in self.streams:
                self._flush_stream(stream)

    def _run(self) -> None:
        backoff = Backoff(initial=self.interval_s, cap=8.0)
        delay = self.interval_s
        while not self._closing.wait(delay):
            try:
                self.flush()
                backoff.reset()
                delay = self.interval_s
            except Exception as error:
                if not is_transient(error):
                    self._failure = error
                    return
                delay = backoff.next_delay()
                log.warning("log upload failed (%s); retrying in %.1f s", error, delay)

    def close(self) -> None:
        """Stop following the files and upload what is left, retrying transient errors until done.
        Raises the first permanent upload error, or `GaveUp` when the agent abandons the upload."""
        self._closing.set()
        if self._thread.is_alive():
            self._thread.join()
        if self._failure is not None:
            raise self._failure
        backoff = Backoff(cap=8.0)
        while True:
            try:
                self.flush()
                return
            except Exception as error:
                if not is_transient(error):
                    raise
                delay = backoff.next_delay()
                log.warning("final log upload failed (%s); retrying in %.1f s", error, delay)
                if self.give_up.wait(delay):
                    raise GaveUp("log upload abandoned") from error
