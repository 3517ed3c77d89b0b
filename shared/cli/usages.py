"""`batchai list-usages`: the subscription's Batch AI usages and quotas in a location (clusters, vCPUs in use
per priority and VM family), as `az batchai list-usages` printed them."""

from __future__ import annotations

from typing import Annotated

import typer

from shared.cli.common import OutputOpt, output_format, session
from shared.cli.output import show_list

COLUMNS = [
    ("Value", lambda u: u.name.localized_value if u.name else ""),
    ("Usage", lambda u: u.current_value or 0),
    ("Limit", lambda u: u.limit or 0),
]


def list_usages(ctx: typer.Context, location: Annotated[str | None, typer.Option(
                    "--location", "-l", help="Location (default: the endpoint file's, else 'local').")] = None,
                output: OutputOpt = None) -> None:
    """Show the current usage and limit of Batch AI resources (clusters, vCPUs) in a location."""
    s = session(ctx)
    where = location or s.endpoint.get("location") or "local"
    show_list(s.client.usages.list(where), COLUMNS, output_format(ctx, output), title=f"Batch AI usages in {where}")
