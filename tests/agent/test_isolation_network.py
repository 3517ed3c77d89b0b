"""Network rules for job users on a machine: the nft table the agent installs, and what it does in a real
network namespace (a container of the machine image): a job uid cannot connect to a closed destination,
root and other users still can. A process node gets no rules."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

import pytest

from shared.agent.firewall import (
    AZURE_IMDS,
    AZURE_WIRESERVER,
    Destination,
    Firewall,
    FirewallError,
    destinations_of,
    ruleset,
)
from shared.agent.isolation import process_node
from shared.agent.job_users import FIRST_UID, uid_range


def test_the_rules_close_imds_the_wireserver_and_the_given_urls_to_job_uids() -> None:
    addresses = {"10.213.5.1": ["10.213.5.1"], "api.example": ["10.1.2.3", "fd00::3"]}
    closed = destinations_of(["http://10.213.5.1:8169", "https://api.example:7071/x"], resolve=addresses.__getitem__)
    assert closed == [Destination("10.1.2.3", 7071), Destination("10.213.5.1", 8169), Destination(AZURE_WIRESERVER),
                      Destination(AZURE_IMDS), Destination("fd00::3", 7071)]
    text = ruleset(*uid_range(), closed)
    first, last = uid_range()
    assert text.startswith("table inet batchai_jobs\ndelete table inet batchai_jobs\n")
    assert f"meta skuid {first}-{last} ip daddr 10.213.5.1 meta l4proto {{ tcp, udp }} th dport 8169 reject" in text
    assert f"meta skuid {first}-{last} ip daddr {AZURE_IMDS} reject" in text
    assert f"meta skuid {first}-{last} ip6 daddr fd00::3 meta l4proto {{ tcp, udp }} th dport 7071 reject" in text
    assert "policy accept" in text  # everything else stays open


def test_rules_that_cannot_be_installed_are_an_error() -> None:
    def refuse(argv: Sequence[str], script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(list(argv), 1, "", "Operation not permitted")
    with pytest.raises(FirewallError, match="Operation not permitted"):
        Firewall(*uid_range(), ["http://127.0.0.1:1"], runner=refuse).install()


def test_a_process_node_installs_no_rules() -> None:
    assert process_node().network() is None


CONNECT = "import socket, sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 5).close(); print('connected')"


def connect_as(label: str, uid: int | None, port: int) -> str:
    """A shell line printing `label: ` and how connecting to 127.0.0.1:`port` went for that user."""
    run_as = f"setpriv --reuid {uid} --regid {uid} --clear-groups " if uid is not None else ""
    return f'echo {label}: $({run_as}python3 -c "$CONNECT" {port} 2>&1 | tail -1); '


@pytest.mark.podman
def test_in_a_machines_network_a_job_uid_is_refused_and_others_connect() -> None:
    if subprocess.run(["podman", "info"], capture_output=True).returncode != 0:
        print("\nSKIPPING: podman cannot run here", file=sys.stderr)
        pytest.skip("podman cannot run here")
    from shared.emulator.image import ensure_image

    image = ensure_image()
    rules = ruleset(*uid_range(), [Destination("127.0.0.1", 8169)])
    job_uid = FIRST_UID + 7
    script = (
        "python3 -m http.server --bind 127.0.0.1 8169 >/dev/null 2>&1 & "
        "python3 -m http.server --bind 127.0.0.1 8170 >/dev/null 2>&1 & "
        "for i in $(seq 50); do python3 -c \"$CONNECT\" 8169 >/dev/null 2>&1 && break; sleep 0.1; done; "
        "printf '%s' \"$RULES\" | nft -f - || exit 9; "
        + connect_as("job-closed", job_uid, 8169) + connect_as("job-open", job_uid, 8170)
        + connect_as("other-user", 1000, 8169) + connect_as("root", None, 8169))
    result = subprocess.run(["podman", "run", "--rm", "--network", "none", "--cap-add", "NET_ADMIN",
                             "-e", f"RULES={rules}", "-e", f"CONNECT={CONNECT}", image, "sh", "-c", script],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)
    assert "ConnectionRefusedError" in lines["job-closed"], result.stdout
    assert lines["job-open"] == "connected" and lines["other-user"] == "connected" and lines["root"] == "connected"
