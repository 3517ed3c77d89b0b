"""Blob triggers on the local trigger host: the container named by the binding's path is scanned
periodically; each blob version (ETag) fires once, remembered by a receipt in azure-webjobs-hosts
(so a restart does not fire it again); after 5 failed tries a message goes to
`webjobs-blobtrigger-poison`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceModifiedError, ResourceNotFoundError
from azure.functions.blob import InputStream
from azure.storage.blob import BlobProperties, BlobServiceClient, ContainerClient, LinearRetry

from shared.localhost.bindings import FunctionSpec, poll_options
from shared.localhost.hoststore import HostStore, Receipt
from shared.localhost.invoke import Invoker

log = logging.getLogger("batchai.localhost")

MAX_BLOB_FAILURES = 5
DEFAULT_SCAN_INTERVAL_S = 0.5  # a manifest upload starts its run within about half a second


@dataclass(frozen=True)
class BlobPath:
    """`container/prefix{name}.ext`: the container, the literal name prefix and a pattern for names."""

    container: str
    prefix: str
    pattern: re.Pattern[str]

    @classmethod
    def parse(cls, path: str) -> BlobPath:
        container, _, rest = path.strip("/").partition("/")
        if not container or "{" in container:
            raise ValueError(f"blob trigger path needs a literal container: {path!r}")
        rest = rest or "{name}"
        prefix = rest.split("{", 1)[0]
        regex, seen = "", set()
        for literal, name in re.findall(r"([^{]*)(?:\{(\w+)\})?", rest):
            regex += re.escape(literal)
            if name:
                regex += f"(?P<{name}>.+)" if name not in seen else f"(?P={name})"
                seen.add(name)
        return cls(container, prefix, re.compile(regex))


class BlobScanner:
    def __init__(self, spec: FunctionSpec, invoker: Invoker, store_factory: Callable[[], HostStore],
                 function_id: str, encoding: str, interval_s: float = DEFAULT_SCAN_INTERVAL_S) -> None:
        self.spec = spec
        self.invoker = invoker
        self.store_factory = store_factory
        self.function_id = function_id
        self.encoding = encoding
        self.interval_s = interval_s
        self.path = BlobPath.parse(str(spec.trigger["path"]))
        self._container: ContainerClient = BlobServiceClient.from_connection_string(
            spec.connection, **poll_options(spec.connection, LinearRetry)).get_container_client(self.path.container)
        self._done: set[tuple[str, str]] = set()
        self._running: dict[tuple[str, str], asyncio.Task[None]] = {}

    async def run(self, stop: asyncio.Event) -> None:
        log.info("Scanning container '%s' for '%s'", self.path.container, self.spec.name)
        while not stop.is_set():
            try:
                await self.scan_once()
            except AzureError as e:
                log.warning("Scanning container '%s' failed (%s); retrying", self.path.container, e)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)

    async def drain(self, timeout_s: float) -> None:
        if self._running:
            await asyncio.wait(set(self._running.values()), timeout=timeout_s)

    async def scan_once(self) -> None:
        for blob in await asyncio.to_thread(self._list):
            key = (blob.name, str(blob.etag))
            if key in self._done or key in self._running:
                continue
            task = asyncio.create_task(self._process(blob))
            self._running[key] = task
            task.add_done_callback(lambda _t, k=key: self._running.pop(k, None))

    def _list(self) -> list[BlobProperties]:
        try:
            blobs = self._container.list_blobs(name_starts_with=self.path.prefix or None, include=["metadata"])
            return [b for b in blobs if self.path.pattern.fullmatch(b.name)]
        except ResourceNotFoundError:
            return []

    async def _process(self, blob: BlobProperties) -> None:
        store = self.store_factory()
        key = (blob.name, str(blob.etag))
        container = self.path.container
        receipt = await asyncio.to_thread(store.receipt, self.function_id, container, blob.name, key[1])
        if receipt and receipt.complete:
            self._done.add(key)
            return
        try:
            data = await asyncio.to_thread(self._download, blob)
        except (ResourceModifiedError, ResourceNotFoundError):
            return  # overwritten or deleted since the listing: the next scan sees the new state
        failures = receipt.failures if receipt else 0
        try:
            await self.invoker.invoke(self.spec, self._argument(blob, data))
            outcome = Receipt(complete=True, failures=failures)
        except Exception:  # the invoker logged it; count the failure on the receipt
            outcome = Receipt(complete=failures + 1 >= MAX_BLOB_FAILURES, failures=failures + 1)
            if outcome.complete:
                log.warning("Blob '%s/%s' failed %d times in '%s'; sending it to the poison queue",
                            container, blob.name, outcome.failures, self.spec.name)
                await asyncio.to_thread(store.poison_blob, self.function_id, container, blob.name, key[1],
                                        self.encoding)
        await asyncio.to_thread(store.write_receipt, self.function_id, container, blob.name, key[1], outcome)
        if outcome.complete:
            self._done.add(key)

    def _download(self, blob: BlobProperties) -> bytes:
        client = self._container.get_blob_client(blob.name)
        return client.download_blob(etag=blob.etag, match_condition=MatchConditions.IfNotModified).readall()

    def _argument(self, blob: BlobProperties, data: bytes) -> Any:
        if self.spec.trigger_annotation is bytes:
            return data
        if self.spec.trigger_annotation is str:
            return data.decode()
        props = {"ETag": blob.etag, "Length": blob.size, "ContentType": blob.content_settings.content_type,
                 "LastModified": blob.last_modified.isoformat() if blob.last_modified else None}
        return InputStream(data=data, name=f"{self.path.container}/{blob.name}",
                                uri=self._container.get_blob_client(blob.name).url, length=len(data),
                                blob_properties=props, metadata=dict(blob.metadata or {}))
