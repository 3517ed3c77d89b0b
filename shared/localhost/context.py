"""The invocation context the local trigger host hands to functions, as the Functions host does."""

from __future__ import annotations

import threading
import uuid

import azure.functions as func


class LocalContext(func.Context):
    def __init__(self, function_name: str, function_directory: str = ".") -> None:
        self._invocation_id = str(uuid.uuid4())
        self._function_name = function_name
        self._function_directory = function_directory
        self._tls = threading.local

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> type[threading.local]:
        return self._tls

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> None:
        return None

    @property
    def retry_context(self) -> None:
        return None
