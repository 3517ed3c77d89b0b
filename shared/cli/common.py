"""Options every resource command shares, and the per-invocation Session they resolve against."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from shared.cli.context import CliError, Session
from shared.cli.output import OUTPUT_FORMATS
from shared.cli.specfiles import StorageAccount, storage_account_from_connection_string

OutputOpt = Annotated[str | None, typer.Option("--output", "-o", help="table or json (REST API shape).")]
GroupOpt = Annotated[str | None, typer.Option("--resource-group", "-g",
                                              help="Resource group (default: the endpoint file's).")]


def session(ctx: typer.Context) -> Session:
    root = ctx.find_root()
    if not isinstance(root.obj, Session):
        root.obj = Session()
    return root.obj


def output_format(ctx: typer.Context, override: str | None) -> str:
    fmt = (override or session(ctx).output).lower()
    if fmt not in OUTPUT_FORMATS:
        raise CliError(f"unknown output format {fmt!r}: use one of {', '.join(OUTPUT_FORMATS)}", exit_code=2)
    return fmt


StorageNameOpt = Annotated[str | None, typer.Option(
    "--storage-account-name", envvar="AZURE_BATCHAI_STORAGE_ACCOUNT",
    help="Storage account for <AZURE_BATCHAI_STORAGE_ACCOUNT> and mount volumes without one "
         "(default: the endpoint's storage).")]
StorageKeyOpt = Annotated[str | None, typer.Option(
    "--storage-account-key", envvar="AZURE_BATCHAI_STORAGE_KEY",
    help="Its key, for <AZURE_BATCHAI_STORAGE_KEY> and mount volumes without credentials.")]


def storage_account(ctx: typer.Context, name: str | None, key: str | None) -> StorageAccount:
    fallback = storage_account_from_connection_string(session(ctx).endpoint.get("storage_connection_string"))
    return StorageAccount(name or fallback.name, key or (fallback.key if not name or name == fallback.name else None))


def pick(what: str, positional: str | None, option: str | None, flag: str) -> str:
    """A name given as a positional argument or as its `az batchai` option (`flag`), not both differently."""
    if positional and option and positional != option:
        raise CliError(f"{what} given twice: {positional!r} and {flag} {option!r}", exit_code=2)
    value = option or positional
    if not value:
        raise CliError(f"missing {what}: pass {flag} (or it as an argument)", exit_code=2)
    return value


YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not prompt for confirmation.")]
NoWaitOpt = Annotated[bool, typer.Option("--no-wait", help="Do not wait for the operation to finish.")]


def confirm(yes: bool, question: str) -> None:
    """Ask before a destructive command on a terminal (as `az` does) unless --yes; scripts are not asked."""
    if yes or not sys.stdin.isatty():
        return
    if not typer.confirm(question, default=False):
        raise CliError("not confirmed: nothing was done", exit_code=1)
