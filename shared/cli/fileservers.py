"""`batchai file-server ...`: create (flags, a file server file, or both), list, show, delete NFS file servers,
with `az batchai file-server` flags. Show and delete go through `arm` (the 7.0.0 SDK has no method for them)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from azure.mgmt.batchai import models

from shared.cli import arm
from shared.cli.accounts import GenerateKeysOpt, PasswordOpt, SshKeyOpt, UserOpt, user_account
from shared.cli.common import GroupOpt, NoWaitOpt, OutputOpt, YesOpt, confirm, output_format, pick, session
from shared.cli.context import CliError
from shared.cli.output import message, show_list, show_one
from shared.cli.specfiles import file_server_model, load_file_server_file

app = typer.Typer(help="File servers: NFS servers with data disks that clusters and jobs mount.",
                  no_args_is_help=True)

WorkspaceArg = Annotated[str | None, typer.Argument(help="Workspace name (or -w).", show_default=False)]
NameArg = Annotated[str | None, typer.Argument(help="File server name (or -n).", show_default=False)]
WorkspaceOpt = Annotated[str | None, typer.Option("--workspace", "-w", help="Workspace name.")]
NameOpt = Annotated[str | None, typer.Option("--name", "-n", help="File server name.")]
DISKS = "Storage Disks"


def names(workspace: str | None, workspace_opt: str | None, name: str | None, name_opt: str | None) -> tuple[str, str]:
    return (pick("the workspace", workspace, workspace_opt, "--workspace/-w"),
            pick("the file server name", name, name_opt, "--name/-n"))


def disks_label(f: models.FileServer) -> str:
    d = f.data_disks
    return f"{d.disk_count} x {d.disk_size_in_gb} GB {d.storage_account_type}" if d else ""


COLUMNS = [
    ("Name", lambda f: f.name),
    ("VM size", lambda f: f.vm_size),
    ("Disks", disks_label),
    ("Internal IP", lambda f: f.mount_settings.file_server_internal_ip if f.mount_settings else None),
    ("Mount point", lambda f: f.mount_settings.mount_point if f.mount_settings else None),
    ("State", lambda f: f.provisioning_state),
]


@app.command("create")
def create(
    ctx: typer.Context, workspace: WorkspaceArg = None, name: NameArg = None,
    workspace_opt: WorkspaceOpt = None, name_opt: NameOpt = None,
    file: Annotated[Path | None, typer.Option("--config-file", "-f", help="A Batch AI file server file.")] = None,
    vm_size: Annotated[str | None, typer.Option("--vm-size", "-s", help="VM size, e.g. STANDARD_D2.")] = None,
    disk_count: Annotated[int | None, typer.Option("--disk-count", min=1, help="Number of data disks.",
                                                   rich_help_panel=DISKS)] = None,
    disk_size: Annotated[int | None, typer.Option("--disk-size", min=1, help="Size of each disk in GB.",
                                                  rich_help_panel=DISKS)] = None,
    caching_type: Annotated[str | None, typer.Option("--caching-type", help="none, readonly or readwrite.",
                                                     rich_help_panel=DISKS)] = None,
    storage_sku: Annotated[str | None, typer.Option("--storage-sku", help="Standard_LRS or Premium_LRS.",
                                                    rich_help_panel=DISKS)] = None,
    subnet: Annotated[str | None, typer.Option("--subnet", help="ARM id of the subnet to put it in.")] = None,
    user: UserOpt = None, password: PasswordOpt = None, ssh_key: SshKeyOpt = None,
    generate_ssh_keys: GenerateKeysOpt = False, no_wait: NoWaitOpt = False,
    group: GroupOpt = None, output: OutputOpt = None,
) -> None:
    """Create a file server from flags, a file server file, or both (flags win)."""
    s = session(ctx)
    ws, fs = names(workspace, workspace_opt, name, name_opt)
    doc: dict[str, Any] = load_file_server_file(file) if file is not None else {"properties": {}}
    props = doc["properties"]
    if vm_size:
        props["vmSize"] = vm_size
    disks = props.setdefault("dataDisks", {})
    for key, value in [("diskCount", disk_count), ("diskSizeInGB", disk_size), ("cachingType", caching_type),
                       ("storageAccountType", storage_sku)]:
        if value is not None:
            disks[key] = value
    missing = [flag for flag, key in [("--vm-size", "vmSize")] if not props.get(key)]
    missing += [flag for flag, key in [("--disk-count", "diskCount"), ("--disk-size", "diskSizeInGB"),
                                       ("--storage-sku", "storageAccountType")] if not disks.get(key)]
    if missing:
        raise CliError(f"a file server needs {', '.join(missing)} (or them in its file)", exit_code=2)
    if subnet:
        props["subnet"] = {"id": subnet}
    ssh = props.setdefault("sshConfiguration", {})
    ssh["userAccountSettings"] = user_account(ssh.get("userAccountSettings"), user, password, ssh_key,
                                              generate_ssh_keys)
    poller = s.client.file_servers.begin_create(s.resource_group(group), ws, fs, file_server_model(doc, file or fs),
                                                polling=not no_wait)
    if no_wait:
        message(f"creating file server {ws}/{fs}")
        return
    show_one(poller.result(), output_format(ctx, output))


@app.command("list")
def list_(ctx: typer.Context, workspace: WorkspaceArg = None, workspace_opt: WorkspaceOpt = None,
          group: GroupOpt = None, output: OutputOpt = None) -> None:
    """List the file servers of a workspace."""
    s = session(ctx)
    ws = pick("the workspace", workspace, workspace_opt, "--workspace/-w")
    show_list(s.client.file_servers.list_by_workspace(s.resource_group(group), ws), COLUMNS,
              output_format(ctx, output), title=f"File servers in {ws}")


@app.command("show")
def show(ctx: typer.Context, workspace: WorkspaceArg = None, name: NameArg = None,
         workspace_opt: WorkspaceOpt = None, name_opt: NameOpt = None, group: GroupOpt = None,
         output: OutputOpt = None) -> None:
    """Show a file server, with where it is mounted from."""
    s = session(ctx)
    ws, fs = names(workspace, workspace_opt, name, name_opt)
    show_one(arm.get_file_server(s.client, s.resource_group(group), ws, fs), output_format(ctx, output))


@app.command("delete")
def delete(ctx: typer.Context, workspace: WorkspaceArg = None, name: NameArg = None,
           workspace_opt: WorkspaceOpt = None, name_opt: NameOpt = None, group: GroupOpt = None,
           yes: YesOpt = False, no_wait: NoWaitOpt = False) -> None:
    """Delete a file server and its data disks."""
    s = session(ctx)
    ws, fs = names(workspace, workspace_opt, name, name_opt)
    confirm(yes, f"Delete file server {ws}/{fs} and its data?")
    poller = arm.begin_delete_file_server(s.client, s.resource_group(group), ws, fs, wait=not no_wait,
                                          interval=s.client._config.polling_interval)
    if no_wait:
        message(f"deleting file server {ws}/{fs}")
        return
    poller.result()
    message(f"deleted file server {ws}/{fs}")
