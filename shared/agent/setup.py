"""Joining a cluster: read its Key Vault references, mount its volumes, then run its node setup task.

The setup task runs as ``bash -c`` on the node (never in a container) as root, as the cluster's own
step (it installs what the node's jobs need), with an allow-listed environment (see
shared.agent.environment): its variables and secrets, $AZ_BATCHAI_MOUNT_ROOT and
$AZ_BATCHAI_STDOUTERR_DIR. Its stdout/stderr stream to ``storage.setup_output_prefix(...)`` in
C_OUTPUTS, and are also written to ``<stdOutErrPathPrefix>/<stdOutErrPathSuffix>/<node id>/`` when
that resolves into a mount (else a node-local directory); that directory must stay under the mount
root, a mount or the node's setup directory, and its files are opened without following links (jobs
of an earlier setup may have written on the share). Processes the setup task leaves running
(daemons) are kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.adapters import storage
from shared.agent.blobsync import BlobMount
from shared.agent.confine import HeldDir, PathEscape, contained, touch
from shared.agent.environment import resolve_secrets, setup_env
from shared.agent.layout import expand, localize, no_climbing
from shared.agent.process_runtime import ProcessRuntime
from shared.agent.runtime import TaskLaunch, TaskStartError
from shared.agent.streaming import LogStreamer
from shared.agent.supervise import Supervisor, TaskControl
from shared.agent.task import NodeContext, tail_text
from shared.domain.keys import ClusterRef


@dataclass
class SetupResult:
    ready: bool
    error: dict[str, str] | None = None


def cluster_volumes(cluster: dict[str, Any]) -> dict[str, Any] | None:
    return (cluster.get("nodeSetup") or {}).get("mountVolumes") or cluster.get("mountVolumes")


def setup_output_dir(node: NodeContext, task: dict[str, Any]) -> Path:
    ref = ClusterRef.from_key(node.channel.cluster_key)
    ws = ref.workspace
    suffix = task.get("stdOutErrPathSuffix") or (
        f"{ws.subscription}/{ws.resource_group}/workspaces/{ws.workspace}/clusters/{ref.name}")
    root = node.layout.mount_root
    prefix = expand(task.get("stdOutErrPathPrefix") or "", {"AZ_BATCHAI_MOUNT_ROOT": str(root)}).rstrip("/")
    if not prefix:
        return node.layout.setup_dir / "stdouterr"
    no_climbing(prefix, "the setup task's stdOutErrPathPrefix")
    no_climbing(suffix, "the setup task's stdOutErrPathSuffix")
    return localize(f"{prefix}/{suffix.strip('/')}/{node.channel.node_id}", [root], node.layout.setup_dir / "local")


def run_setup(node: NodeContext, cluster: dict[str, Any], control: TaskControl) -> SetupResult:
    try:
        cluster = resolve_secrets(cluster, node.read_secret)
        mounted = node.mount_cluster(cluster)
    except TaskStartError as error:
        return SetupResult(False, {"code": error.code, "message": error.message})
    task = (cluster.get("nodeSetup") or {}).get("setupTask")
    if not task or not task.get("commandLine"):
        return SetupResult(True)
    roots = [node.layout.mount_root, node.layout.setup_dir, *mounted.sources]
    try:
        out_dir = contained(setup_output_dir(node, task), roots, "the setup task's stdout/stderr directory")
        wd = node.layout.setup_dir / "wd"
        out_dir.mkdir(parents=True, exist_ok=True)
        wd.mkdir(parents=True, exist_ok=True)
        held = HeldDir(out_dir, roots, "the setup task's stdout/stderr directory")
    except TaskStartError as error:
        return SetupResult(False, {"code": error.code, "message": error.message})
    except (OSError, PathEscape) as error:
        return SetupResult(False, {"code": "SetupTaskFailed", "message": f"cannot create setup directories: {error}"})
    try:
        return _run(node, task, held, wd, mounted.blob_mounts, control)
    finally:
        held.close()


def _run(node: NodeContext, task: dict[str, Any], out_dir: HeldDir, wd: Path, mounts: list[BlobMount],
         control: TaskControl) -> SetupResult:
    try:
        env = setup_env(node.base_env, task, str(node.layout.mount_root), str(out_dir.path))
    except TaskStartError as error:
        return SetupResult(False, {"code": error.code, "message": error.message})
    files = {k: out_dir.entry(f"{k}.txt") for k in ("stdout", "stderr")}
    try:
        for path in files.values():
            touch(path)
    except OSError as error:
        return SetupResult(False, {"code": "SetupTaskFailed", "message": f"cannot create the setup output: {error}"})
    ref = ClusterRef.from_key(node.channel.cluster_key)
    prefix = storage.setup_output_prefix(ref.workspace.workspace, ref.name, node.channel.node_id)
    streamer = LogStreamer(node.storage.outputs(storage.C_OUTPUTS, None),
                           [(files[k], f"{prefix}/{k}.txt") for k in files], give_up=node.give_up).start()
    try:
        running = ProcessRuntime(kill_leftovers=False).start(TaskLaunch(
            command=task["commandLine"], env=env, cwd=str(wd), stdout_path=str(files["stdout"]),
            stderr_path=str(files["stderr"]), name="setup task"))
        code, stop = Supervisor(control, None, 0.0).run(running)
    except TaskStartError as error:
        return SetupResult(False, {"code": "SetupTaskFailed", "message": error.message})
    finally:
        streamer.close()
    for mount in mounts:
        mount.upload_changes()
    if stop is not None:
        return SetupResult(False, {"code": "SetupTaskFailed", "message": f"the setup task was stopped ({stop.reason})"})
    if code != 0:
        return SetupResult(False, {"code": "SetupTaskFailed",
                                   "message": f"the setup task exited with code {code}: {tail_text(files['stderr'])}"})
    return SetupResult(True)
