"""Invoking user functions on the local trigger host: arguments by binding name, `context`, output
bindings flushed after success; sync functions in a thread pool, async ones on the loop; a bounded
number at once across all triggers; host.json's functionTimeout."""

from __future__ import annotations

import asyncio
import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shared.localhost.bindings import FunctionSpec, LocalOut, connection_string, send_text
from shared.localhost.context import LocalContext

log = logging.getLogger("batchai.localhost")


class Invoker:
    def __init__(self, max_concurrency: int = 16, message_encoding: str = "base64",
                 function_timeout_s: float | None = None) -> None:
        self._slots = asyncio.Semaphore(max_concurrency)
        self._pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="function")
        self._encoding = message_encoding
        self._timeout = function_timeout_s

    async def invoke(self, spec: FunctionSpec, trigger_value: Any) -> Any:
        """Run the function once; raises what it raises (the trigger decides about retries)."""
        context = LocalContext(spec.name)
        kwargs: dict[str, Any] = {spec.arg_name: trigger_value}
        if spec.wants_context:
            kwargs["context"] = context
        outs = {o.name: LocalOut() for o in spec.queue_outputs}
        kwargs.update(outs)
        async with self._slots:
            log.info("Executing '%s' (id=%s)", spec.name, context.invocation_id)
            try:
                if spec.is_async:
                    result = await asyncio.wait_for(spec.user(**kwargs), self._timeout)
                else:
                    call = functools.partial(spec.user, **kwargs)
                    future = asyncio.get_running_loop().run_in_executor(self._pool, call)
                    result = await asyncio.wait_for(future, self._timeout)
            except Exception:
                log.exception("Executed '%s' (Failed, id=%s)", spec.name, context.invocation_id)
                raise
            for output in spec.queue_outputs:
                texts = output.messages(outs[output.name].get())
                if texts:
                    conn = connection_string(output.connection)
                    for text in texts:
                        await asyncio.to_thread(send_text, conn, output.queue_name, text, self._encoding)
            log.info("Executed '%s' (Succeeded, id=%s)", spec.name, context.invocation_id)
            return result

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
