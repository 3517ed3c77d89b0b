"""How the CLI prints SDK models: rich tables, or JSON in the REST API's own camelCase shape."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import typer
from msrest.serialization import Model
from rich.console import Console
from rich.table import Table

OUTPUT_FORMATS = ("table", "json")

Column = tuple[str, Callable[[Any], Any]]

PIPE_WIDTH = 4096  # tables written to a pipe or file keep each row on one line


def out() -> Console:
    """stdout as it is now (tests swap sys.stdout); tables sent to a pipe keep each row on one line."""
    return Console(file=sys.stdout, highlight=False, soft_wrap=True,
                   width=None if sys.stdout.isatty() else PIPE_WIDTH)


err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def rest_dict(model: Model) -> dict[str, Any]:
    """The model as the REST API sends it (camelCase, nested `properties`), read-only fields included."""
    return model.serialize(keep_readonly=True)


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, sort_keys=False, default=str))


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, Model):
        return json.dumps(value.serialize(keep_readonly=True), default=str)
    return str(value)


def show_list(items: Iterable[Model], columns: Sequence[Column], output: str, title: str | None = None) -> None:
    rows = list(items)
    if output == "json":
        print_json([rest_dict(m) for m in rows])
        return
    table = Table(title=title, show_lines=False)
    for header, _ in columns:
        table.add_column(header, overflow="fold")  # never cut a value (URLs, ids) short
    for model in rows:
        table.add_row(*(cell(get(model)) for _, get in columns))
    out().print(table)


def flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        pairs: list[tuple[str, Any]] = []
        for key, inner in value.items():
            pairs.extend(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return pairs
    if isinstance(value, list) and value and any(isinstance(v, dict | list) for v in value):
        pairs = []
        for i, inner in enumerate(value):
            pairs.extend(flatten(inner, f"{prefix}[{i}]"))
        return pairs
    if isinstance(value, list):
        return [(prefix, ", ".join(str(v) for v in value))]
    return [(prefix, value)]


def show_one(model: Model | dict[str, Any], output: str) -> None:
    """One resource (a model, or the JSON the service sent): its REST JSON, or a two-column table of its
    flattened fields (`properties.` dropped)."""
    body = model if isinstance(model, dict) else rest_dict(model)
    if output == "json":
        print_json(body)
        return
    pairs = [(key.removeprefix("properties."), cell(value)) for key, value in flatten(body)]
    width = max((len(key) for key, _ in pairs), default=0)
    for key, value in pairs:
        typer.echo(f"{key:<{width}}  {value}")


def message(text: str) -> None:
    """A progress or confirmation line: stderr, so that stdout stays machine-readable."""
    err_console.print(text)
