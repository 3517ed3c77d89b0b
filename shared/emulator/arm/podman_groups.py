"""Container groups that really run: each group's container is a podman container on this host.

The container runs the group's image (it must exist locally: nothing is pulled), its command (in
place of the image's entrypoint, as ACI does), its environment (secure values too: they reach
podman through its own environment, never its command line), its restart policy, and its volumes:
an Azure Files share is the emulated share directory the rest of the stack uses
(`local_paths.fileshare_dir`), an emptyDir a volume that goes with the container. Its network is
the one given (none by default: it reaches nothing). Labels: `batchai.stack`, `batchai.role=aci`,
`batchai.group` (the group's lower-case ARM id).

State and times come from `podman container inspect`, logs from `podman logs` (stdout and stderr
as one stream, as ACI gives them), deletion is `podman rm -f`. Groups of more than one container
are refused (they would need a pod); this deployment runs one container per group.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from shared.adapters.local_paths import fileshare_dir
from shared.emulator.arm.containers import ContainerGroup, ContainerState

RESTART = {"never": "no", "onfailure": "on-failure", "always": "always"}
WAITING = ("created", "configured", "initialized")
RUNNING = ("running", "paused", "stopping")
TIMEOUT_S = 120
_RFC3339 = re.compile(r"(?P<date>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(?P<fraction>\d+))?(?P<offset>Z|[+-]\d\d:\d\d)?$")


class PodmanContainerGroups:
    """ContainerGroupBackend over the podman CLI."""

    def __init__(self, state_dir: Path, stack_id: str, network: str = "none", podman: str = "podman") -> None:
        self._state_dir = state_dir
        self._stack_id = stack_id
        self._network = network
        self._podman = podman

    def container_name(self, group: ContainerGroup) -> str:
        digest = hashlib.sha256(group.resource_id.lower().encode()).hexdigest()[:10]
        return f"bai-{self._stack_id}-{group.name[:40]}-{digest}"

    def start(self, group: ContainerGroup) -> None:
        if len(group.containers) != 1:
            raise ValueError(f"container group {group.name} has {len(group.containers)} containers; "
                             "only single-container groups run here")
        name = self.container_name(group)
        if self._podman_run(["container", "exists", name], check=False).returncode == 0:
            return  # started already
        container = group.containers[0]
        argv = ["run", "-d", "--name", name, "--pull=never", "--network", self._network,
                "--restart", RESTART.get(group.restart_policy.lower(), "always"),
                "--label", f"batchai.stack={self._stack_id}", "--label", "batchai.role=aci",
                "--label", f"batchai.group={group.resource_id.lower()}"]
        for key, value in container.environment.items():
            argv += ["-e", f"{key}={value}"]
        for key in container.secure_environment:
            argv += ["-e", key]  # the value comes from podman's environment
        argv += self._volumes(group)
        if container.command:
            argv += ["--entrypoint", json.dumps(list(container.command))]
        argv.append(container.image)
        started = self._podman_run(argv, check=False, env={**os.environ, **container.secure_environment})
        if started.returncode != 0:
            self._podman_run(["rm", "-f", "-v", "--ignore", name], check=False)  # a failed start leaves it Created
            raise RuntimeError(f"podman could not start {container.image}: {started.stderr.strip()}")

    def state(self, group: ContainerGroup) -> ContainerState:
        found = self._podman_run(["container", "inspect", self.container_name(group)], check=False)
        if found.returncode != 0:
            if "no such" in found.stderr.lower():
                return ContainerState("Terminated", None, detail_status="the container is gone")
            raise RuntimeError(f"podman container inspect failed: {found.stderr.strip()}")
        state = json.loads(found.stdout)[0]["State"]
        status = str(state.get("Status", "")).lower()
        started, finished = _iso(state.get("StartedAt")), _iso(state.get("FinishedAt"))
        if status in WAITING:
            return ContainerState("Waiting", detail_status="Created")
        if status in RUNNING:
            return ContainerState("Running", start_time=started)
        # podman stamps StartedAt once runc's start returns: a quick container can finish "before" it started
        finished = max(finished, started)
        code = int(state.get("ExitCode", -1))
        return ContainerState("Terminated", code, started, finished, "Completed" if code == 0 else "Error")

    def logs(self, group: ContainerGroup) -> str:
        done = subprocess.run([self._podman, "logs", self.container_name(group)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT_S)
        return done.stdout if done.returncode == 0 else ""

    def delete(self, group: ContainerGroup) -> None:
        self._podman_run(["rm", "-f", "-v", "-t", "0", "--ignore", self.container_name(group)])

    def _volumes(self, group: ContainerGroup) -> list[str]:
        volumes = {v.name: v for v in group.volumes}
        argv: list[str] = []
        for mount in group.containers[0].volume_mounts:
            volume = volumes[mount.volume]
            if volume.kind == "azureFile":
                url = f"https://{volume.account_name}.file.core.windows.net/{volume.share_name}"
                host = fileshare_dir(self._state_dir, volume.account_name, url)
                host.mkdir(parents=True, exist_ok=True)
                mode = "ro" if mount.read_only or volume.read_only else "rw"
                argv += ["-v", f"{host}:{mount.mount_path}:{mode}"]
            elif volume.kind == "emptyDir":
                argv += ["-v", mount.mount_path]  # an anonymous volume, removed with the container
            else:
                raise ValueError(f"volume {volume.name}: {volume.kind} volumes are not emulated")
        return argv

    def _podman_run(self, argv: Sequence[str], check: bool = True,
                    env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([self._podman, *argv], capture_output=True, text=True, timeout=TIMEOUT_S,
                              env=dict(env) if env is not None else None)
        if check and done.returncode != 0:
            raise RuntimeError(f"podman {argv[0]} failed: {done.stderr.strip()}")
        return done


def _iso(stamp: object) -> str:
    """podman's RFC 3339 time (nanoseconds, any offset) as ISO 8601 UTC with microseconds; "" when never set."""
    match = _RFC3339.match(str(stamp or ""))
    if match is None or match["date"].startswith("0001-01-01"):
        return ""
    offset = "+00:00" if match["offset"] in (None, "Z") else match["offset"]
    moment = datetime.fromisoformat(f"{match['date']}.{((match['fraction'] or '') + '000000')[:6]}{offset}")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
