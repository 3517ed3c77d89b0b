"""The admin user account of cluster nodes and file servers (`-u`, `-p`, `-k`, `--generate-ssh-keys`).

As `az batchai` did: the user name defaults to the current user; the SSH key is a key or a path to
one; without a password or key, ~/.ssh's public key is used. Where `az` then gave up, a random
password is generated (and said so), so that a cluster can always be created.
"""

from __future__ import annotations

import getpass
import os
import secrets
from pathlib import Path
from typing import Annotated, Any

import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.cli.context import CliError
from shared.cli.output import message

UserOpt = Annotated[str | None, typer.Option("--user-name", "-u", help="Admin user (default: the current user).")]
PasswordOpt = Annotated[str | None, typer.Option("--password", "-p", help="Admin user password.")]
SshKeyOpt = Annotated[str | None, typer.Option("--ssh-key", "-k", help="Admin SSH public key, or its file.")]
GenerateKeysOpt = Annotated[bool, typer.Option(
    "--generate-ssh-keys", help="Create ~/.ssh/id_rsa and id_rsa.pub when missing, and use that key.")]

PUBLIC_KEY_NAMES = ("id_rsa.pub", "id_ed25519.pub")


def ssh_dir() -> Path:
    return Path.home() / ".ssh"


def default_ssh_key() -> str | None:
    for name in PUBLIC_KEY_NAMES:
        path = ssh_dir() / name
        if path.is_file():
            return path.read_text().strip()
    return None


def generate_ssh_keys() -> Path:
    """~/.ssh/id_rsa (0600) and id_rsa.pub (OpenSSH), unless the pair exists; the public key's path."""
    private, public = ssh_dir() / "id_rsa", ssh_dir() / "id_rsa.pub"
    if private.is_file() and public.is_file():
        return public
    if private.exists() or public.exists():
        raise CliError(f"only one of {private} and {public} exists: not overwriting it")
    ssh_dir().mkdir(mode=0o700, parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                            serialization.NoEncryption())
    descriptor = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as f:
        f.write(pem)
    openssh = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    public.write_bytes(openssh + b"\n")
    message(f"generated an SSH key pair: {private} and {public}")
    return public


def user_account(existing: dict[str, Any] | None, user: str | None, password: str | None, ssh_key: str | None,
                 generate_keys: bool = False) -> dict[str, Any]:
    """The REST userAccountSettings: flags over the file's settings over the defaults."""
    if generate_keys and not ssh_key:
        ssh_key = str(generate_ssh_keys())
    account = dict(existing or {})
    if user:
        account["adminUserName"] = user
    account.setdefault("adminUserName", getpass.getuser())
    if password:
        account["adminUserPassword"] = password
    if ssh_key:
        key_path = Path(ssh_key).expanduser()
        account["adminUserSshPublicKey"] = key_path.read_text().strip() if key_path.is_file() else ssh_key
    if not account.get("adminUserPassword") and not account.get("adminUserSshPublicKey"):
        key = default_ssh_key()
        if key:
            account["adminUserSshPublicKey"] = key
        else:
            account["adminUserPassword"] = secrets.token_urlsafe(18)
            message("no --password or --ssh-key given and no ~/.ssh key found: generated an admin password")
    return account
