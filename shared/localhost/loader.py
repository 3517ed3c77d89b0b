"""Loading a Functions app module and listing its functions once (a second listing raises)."""

from __future__ import annotations

import importlib
from functools import lru_cache
from typing import Any

import azure.functions as func


def load_app(module_name: str = "function_app", attribute: str = "app") -> func.FunctionApp:
    """The app object itself (the module is imported once; the host needs it for ASGI shutdown)."""
    return getattr(importlib.import_module(module_name), attribute)


@lru_cache(maxsize=4)
def load_functions(module_name: str = "function_app", attribute: str = "app") -> tuple[Any, ...]:
    return tuple(load_app(module_name, attribute).get_functions())


def by_trigger(functions: tuple[Any, ...], trigger_type: str) -> list[Any]:
    return [f for f in functions if f.get_trigger().get_dict_repr()["type"] == trigger_type]
