"""Accounts of job users on a machine, so that a job's own user can reach the same job on the gang's
other nodes over ssh (mpirun's way), and nothing more.

A job's uid differs from machine to machine (each draws from its own pool), so its account is named
after the assignment (`shared.agent.job_users.account_name`): the gang's machines all create it, each
with its own uid.
Its home is the task's home directory; its ssh key pair is derived from the cluster's key (root's,
written by cloud-init) and the assignment id, so every node of the gang derives the same pair and
trusts it for that account only: the job never holds the cluster's key, and its key opens no other
account, no other job's and not root's. mpirun reaches a node whose agent has not made the
account yet through `SSH_AGENT_SCRIPT` (its rsh agent), which waits until a login succeeds.

The process topology makes no accounts (its gang's nodes share one host and mpirun needs no ssh;
the host's accounts are not the agent's to change).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from shared.agent.job_users import account_name

CLUSTER_KEY = Path("/root/.ssh/id_ed25519")
EXISTS = 9  # useradd/groupadd: the name is taken (made by an earlier run of this task's agent)
Runner = Callable[[Sequence[str]], subprocess.CompletedProcess[str]]

SSH_AGENT_SCRIPT = """#!/bin/sh
# mpirun's rsh agent: ssh to the gang's node once the job's account there takes a login (that
# node's agent makes it when its task starts), then the command.
host=$1 end=$(( $(date +%s) + 120 ))
until ssh -o BatchMode=yes -o ConnectTimeout=10 "$host" true 2>/dev/null; do
  [ "$(date +%s)" -lt "$end" ] || break
  sleep 1
done
exec ssh -o BatchMode=yes "$@"
"""


def derived_key(cluster_key: bytes, assignment_id: str) -> tuple[bytes, bytes]:
    """(OpenSSH private key, OpenSSH public key) of an assignment, from the cluster's private key."""
    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"batchai job ssh key\0" + assignment_id.encode()).derive(cluster_key)
    key = Ed25519PrivateKey.from_private_bytes(seed)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public + b" " + account_name(assignment_id).encode() + b"\n"


def run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=60)


def _write(path: Path, data: bytes, mode: int, uid: int, gid: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        os.write(fd, data)
        os.fchmod(fd, mode)
        os.fchown(fd, uid, gid)
    finally:
        os.close(fd)


class JobAccounts:
    def __init__(self, cluster_key: Path = CLUSTER_KEY, runner: Runner = run) -> None:
        self.cluster_key = cluster_key
        self.runner = runner

    def create(self, name: str, uid: int, gid: int, home: Path, assignment_id: str) -> Path | None:
        """The account (home made and its user's); its ssh files when the cluster has a key. The path of
        the rsh agent for mpirun, or None without a key. Raises OSError when the account cannot be made."""
        for argv in (("groupadd", "-g", str(gid), name),
                     ("useradd", "-u", str(uid), "-g", str(gid), "-d", str(home), "-M", "-s", "/bin/bash",
                      "-p", "*", name)):
            result = self.runner(argv)
            if result.returncode not in (0, EXISTS):
                raise OSError(f"{argv[0]} {name} exited with {result.returncode}: {result.stderr.strip()}")
        try:
            cluster_key = self.cluster_key.read_bytes()
        except FileNotFoundError:
            return None
        ssh = home / ".ssh"
        ssh.mkdir(mode=0o700, exist_ok=True)
        os.chown(ssh, uid, gid)
        private, public = derived_key(cluster_key, assignment_id)
        _write(ssh / "id_ed25519", private, 0o600, uid, gid)
        _write(ssh / "authorized_keys", public, 0o600, uid, gid)
        _write(ssh / "batchai-ssh", SSH_AGENT_SCRIPT.encode(), 0o700, uid, gid)
        return ssh / "batchai-ssh"

    def remove(self, name: str) -> None:
        self.runner(("userdel", name))
        self.runner(("groupdel", name))  # gone with the user where useradd's USERGROUPS_ENAB applies
