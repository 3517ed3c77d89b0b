"""Job accounts on machines: named after the assignment, with an ssh key pair every node of the gang
derives alike from the cluster's key, trusted for that account only (the commands run through the
runner seam here; machines run them for real in the end-to-end tests)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.agent.job_accounts import JobAccounts, derived_key
from shared.agent.job_users import account_name


def raw(private: bytes) -> bytes:
    key = serialization.load_ssh_private_key(private, password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())


def cluster_key() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                                      serialization.NoEncryption())


def test_every_node_derives_the_same_pair_for_an_assignment_and_another_for_the_next() -> None:
    key = cluster_key()
    private, public = derived_key(key, "assignment-1")
    again = derived_key(key, "assignment-1")
    assert raw(again[0]) == raw(private) and again[1] == public
    assert derived_key(key, "assignment-2")[1] != public
    assert derived_key(cluster_key(), "assignment-1")[1] != public  # another cluster: another pair
    loaded = serialization.load_ssh_private_key(private, password=None)
    assert loaded.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH) \
        == public.split(b" job-")[0]
    assert public.endswith(f" {account_name('assignment-1')}\n".encode())
    assert key not in private


def test_an_account_gets_its_home_files_and_goes_with_its_group(tmp_path: Path) -> None:
    ran: list[tuple[str, ...]] = []

    def runner(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        ran.append(tuple(argv))
        return subprocess.CompletedProcess(list(argv), 0, "", "")
    key_file = tmp_path / "id_ed25519"
    key_file.write_bytes(cluster_key())
    home = tmp_path / "home"
    home.mkdir()
    name, uid = account_name("a1"), os.getuid()
    rsh = JobAccounts(key_file, runner).create(name, uid, os.getgid(), home, "a1")
    assert ran == [("groupadd", "-g", str(os.getgid()), name),
                   ("useradd", "-u", str(uid), "-g", str(os.getgid()), "-d", str(home), "-M", "-s", "/bin/bash",
                    "-p", "*", name)]
    ssh = home / ".ssh"
    assert rsh == ssh / "batchai-ssh" and os.access(rsh, os.X_OK)
    assert raw((ssh / "id_ed25519").read_bytes()) == raw(derived_key(key_file.read_bytes(), "a1")[0])
    assert (ssh / "authorized_keys").read_bytes() == derived_key(key_file.read_bytes(), "a1")[1]
    assert {p.name: p.stat().st_mode & 0o777 for p in ssh.iterdir()} == {
        "id_ed25519": 0o600, "authorized_keys": 0o600, "batchai-ssh": 0o700}
    JobAccounts(key_file, runner).remove(name)
    assert ran[-2:] == [("userdel", name), ("groupdel", name)]


def test_without_a_cluster_key_the_account_has_no_ssh(tmp_path: Path) -> None:
    def runner(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(list(argv), 9 if argv[0] == "groupadd" else 0, "", "exists")
    home = tmp_path / "home"
    home.mkdir()
    assert JobAccounts(tmp_path / "missing", runner).create("job-x", 1, 1, home, "a") is None
    assert not (home / ".ssh").exists()
