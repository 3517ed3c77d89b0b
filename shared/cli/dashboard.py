"""`batchai dashboard`: the web dashboard's sign-in link (served by the service beside its API)."""

from __future__ import annotations

import webbrowser
from typing import Annotated

import typer

from shared.cli.common import session
from shared.cli.context import CliError
from shared.cli.output import message


def dashboard(ctx: typer.Context, open_browser: Annotated[bool, typer.Option(
        "--open", help="Open the link in this machine's web browser too.")] = False) -> None:
    """Print the dashboard's sign-in link (people sign in with the identity provider the API trusts)."""
    endpoint = session(ctx).endpoint
    if not endpoint.get("url"):
        raise CliError("no service endpoint: start the local stack (`batchai stack up`) or pass --endpoint")
    link = f"{str(endpoint['url']).rstrip('/')}/dashboard/signin"
    typer.echo(link)
    if endpoint.get("ca_file"):
        message(f"the service's certificate is signed by the local stack's CA ({endpoint['ca_file']}): "
                "let your browser trust it, or accept the certificate once")
    if open_browser and not webbrowser.open(link):
        raise CliError("no web browser could be opened here: open the link above yourself")
