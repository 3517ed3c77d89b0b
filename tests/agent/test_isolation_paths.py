"""Jobs cannot make the agent reach host paths: mount sources, mount points, stdout/stderr and output
directories stay under their roots; a job's mountCommand never runs; uploads, log streams and blob
downloads never follow a link a job put in their way. Real agent processes, as on a process node."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.adapters import local_paths, storage
from shared.agent.confine import PathEscape, create_under, files_under, relative_parts
from shared.config import AZURITE_ACCOUNT, AZURITE_KEY
from shared.domain.messages import AssignedTask
from tests.agent.conftest import AgentProc, Events, assignment, blob_text, job_props

KEY = {"accountKey": AZURITE_KEY}


def run(agent: AgentProc, events: Events, job: dict[str, Any], **kw: Any) -> tuple[AssignedTask, dict[str, Any]]:
    a = assignment(agent, job, **kw)
    agent.send(a)
    return a, events.wait(agent.node_id, "task-exited", a.assignment_id, timeout=60)


def share(url_name: str, account: str = AZURITE_ACCOUNT, at: str = "afs") -> dict[str, Any]:
    return {"accountName": account, "azureFileUrl": f"https://{AZURITE_ACCOUNT}.file.core.windows.net/{url_name}",
            "credentials": KEY, "relativeMountPath": at}


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    """A root-only file of the host that no job may read."""
    path = tmp_path / f"host-secret-{uuid.uuid4().hex[:6]}"
    path.write_text(f"host secret {uuid.uuid4().hex}\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def top_level_dir() -> Iterator[Path]:
    """A name at the root of the host's file system that a path escape would create (removed after)."""
    path = Path("/") / f"batchai-escape-{uuid.uuid4().hex[:8]}"
    yield path
    if path.is_dir():
        for child in path.iterdir():
            child.unlink()
        path.rmdir()


# --- mount sources and mount points -------------------------------------------------------------

@pytest.mark.parametrize("account", ["/", "..", "../.."])
def test_a_share_of_an_account_named_like_a_path_is_refused(start_agent: Callable[..., AgentProc], events: Events,
                                                            top_level_dir: Path, account: str) -> None:
    agent = start_agent()
    job = job_props('ls -la "$AZ_BATCHAI_JOB_MOUNT_ROOT/afs/"',
                    mountVolumes={"azureFileShares": [share(top_level_dir.name, account=account)]})
    a, exited = run(agent, events, job)
    assert exited["error"]["code"] == "MountFailed", exited
    assert "accountName" in exited["error"]["message"]
    assert not top_level_dir.exists()
    assert not (agent.workdir / "jobs" / a.assignment_id / "mounts" / "afs").exists()


def test_a_file_server_source_directory_climbing_out_is_refused(start_agent: Callable[..., AgentProc],
                                                                 events: Events) -> None:
    agent = start_agent()
    server = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.BatchAI/workspaces/ws/fileServers/nfs"
    job = job_props('cat "$AZ_BATCHAI_JOB_MOUNT_ROOT/nfs/passwd"', mountVolumes={"fileServers": [
        {"fileServer": {"id": server}, "sourceDirectory": "../" * 16 + "etc", "relativeMountPath": "nfs"}]})
    a, exited = run(agent, events, job)
    assert exited["error"]["code"] == "MountFailed", exited
    assert "sourceDirectory" in exited["error"]["message"]
    assert "root:" not in (blob_text(agent.conn, f"{a.output_prefix}/stdouterr/stdout.txt") or "")


def test_a_mount_point_through_a_link_out_of_the_mount_root_is_refused(
        start_agent: Callable[..., AgentProc], events: Events, tmp_path: Path) -> None:
    agent = start_agent()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    agent.mount_root.mkdir(parents=True, exist_ok=True)
    (agent.mount_root / "planted").symlink_to(elsewhere)  # left by an earlier job in the node-shared root
    agent.send_setup({"nodeSetup": {"mountVolumes": {"azureFileShares": [share("plantshare", at="planted/afs")]}}})
    unusable = events.wait(agent.node_id, "node-unusable", timeout=30)
    assert unusable["error"]["code"] == "MountFailed", unusable
    assert list(elsewhere.iterdir()) == []


def test_a_job_mount_command_never_runs(start_agent: Callable[..., AgentProc], events: Events,
                                        tmp_path: Path) -> None:
    agent = start_agent()
    marker = tmp_path / "mount-command-ran"
    job = job_props("echo main-ran", mountVolumes={"unmanagedFileSystems": [
        {"mountCommand": f"touch {marker}; mkdir -p", "relativeMountPath": "custom"}]})
    a, exited = run(agent, events, job)
    assert exited["error"]["code"] == "MountFailed", exited
    assert "unmanagedFileSystems" in exited["error"]["message"]
    assert not marker.exists()


# --- stdout/stderr and output directories -------------------------------------------------------

@pytest.fixture
def planted_share(start_agent: Callable[..., AgentProc], events: Events,
                  tmp_path: Path) -> tuple[AgentProc, dict[str, Any], Path]:
    """A node whose cluster share (at $AZ_BATCHAI_MOUNT_ROOT/afs) holds `evil`, a link an earlier job left
    there to a directory of the host; the cluster; that directory."""
    agent = start_agent()
    name = f"planted{uuid.uuid4().hex[:6]}"
    cluster = {"nodeSetup": {"mountVolumes": {"azureFileShares": [share(name)]}}}
    agent.send_setup(cluster)
    events.wait(agent.node_id, "node-ready", timeout=30)
    victim = tmp_path / "victim"
    victim.mkdir()
    share_dir = local_paths.fileshare_dir(agent.state_dir, AZURITE_ACCOUNT, f"https://x/{name}")
    (share_dir / "evil").symlink_to(victim)
    return agent, cluster, victim


@pytest.mark.parametrize("where", ["stdOutErrPathPrefix", "pathPrefix"])
def test_a_path_prefix_through_a_link_on_a_share_is_refused(planted_share: tuple[AgentProc, dict[str, Any], Path],
                                                            events: Events, where: str) -> None:
    agent, cluster, victim = planted_share
    prefix = "$AZ_BATCHAI_MOUNT_ROOT/afs/evil"
    job = (job_props("echo hi", stdOutErrPathPrefix=prefix) if where == "stdOutErrPathPrefix" else
           job_props("echo hi", outputDirectories=[{"id": "OUT", "pathPrefix": prefix}]))
    a, exited = run(agent, events, job, cluster=cluster)
    assert exited["error"]["code"] == "InvalidPath", exited
    assert str(victim) in exited["error"]["message"]
    assert list(victim.iterdir()) == []  # nothing was made in the host's directory


def test_a_path_suffix_or_prefix_climbing_out_is_refused(start_agent: Callable[..., AgentProc],
                                                         events: Events) -> None:
    agent = start_agent()
    for job in (job_props("echo hi", outputDirectories=[{"id": "OUT", "pathPrefix": "$AZ_BATCHAI_MOUNT_ROOT/out",
                                                           "pathSuffix": "../../../../../../.."}]),
                job_props("echo hi", stdOutErrPathPrefix="$AZ_BATCHAI_MOUNT_ROOT/../../../../tmp")):
        _, exited = run(agent, events, job)
        assert exited["error"]["code"] == "InvalidPath", exited
        assert "'..'" in exited["error"]["message"]


# --- nothing followed: log streams, outputs, blob mounts ----------------------------------------

def test_a_stdout_file_replaced_by_a_link_uploads_nothing_of_its_target(
        start_agent: Callable[..., AgentProc], events: Events, secret_file: Path) -> None:
    agent = start_agent()
    command = ('echo before; rm -f "$AZ_BATCHAI_STDOUTERR_DIR/stderr.txt"; '
               f'ln -s {secret_file} "$AZ_BATCHAI_STDOUTERR_DIR/stderr.txt"; echo after-link')
    a, exited = run(agent, events, job_props(command))
    assert exited["exit_code"] == 0, exited
    assert blob_text(agent.conn, f"{a.output_prefix}/stdouterr/stderr.txt") == ""
    assert "after-link" in (blob_text(agent.conn, f"{a.output_prefix}/stdouterr/stdout.txt") or "")


def test_links_in_an_output_directory_are_not_uploaded(start_agent: Callable[..., AgentProc], events: Events,
                                                       secret_file: Path) -> None:
    agent = start_agent()
    command = ('cd "$AZ_BATCHAI_OUTPUT_OUT" && echo mine > own.txt && '
               f'ln -s {secret_file} file-link && ln -s {secret_file.parent} dir-link')
    a, exited = run(agent, events, job_props(command, outputDirectories=[{"id": "OUT"}]))
    assert exited["exit_code"] == 0, exited
    names = [b.name for b in storage.container(agent.conn, storage.C_OUTPUTS).list_blobs(
        name_starts_with=f"{a.output_prefix}/outputs/OUT/")]
    assert names == [f"{a.output_prefix}/outputs/OUT/own.txt"]


def test_a_link_in_a_blob_mount_is_not_uploaded_to_the_container(start_agent: Callable[..., AgentProc],
                                                                  events: Events, secret_file: Path) -> None:
    agent = start_agent()
    container = storage.blob_service(agent.conn).get_container_client(f"linkout{uuid.uuid4().hex[:8]}")
    container.create_container()
    command = (f'echo mine > "$AZ_BATCHAI_JOB_MOUNT_ROOT/bfs/own.txt"; '
               f'ln -s {secret_file} "$AZ_BATCHAI_JOB_MOUNT_ROOT/bfs/leak.txt"')
    job = job_props(command, mountVolumes={"azureBlobFileSystems": [
        {"accountName": AZURITE_ACCOUNT, "containerName": container.container_name, "credentials": KEY,
         "relativeMountPath": "bfs"}]})
    _, exited = run(agent, events, job)
    assert exited["exit_code"] == 0, exited
    assert sorted(b.name for b in container.list_blobs()) == ["own.txt"]


def test_a_blob_download_replaces_a_link_instead_of_writing_through_it(
        start_agent: Callable[..., AgentProc], events: Events, tmp_path: Path) -> None:
    agent = start_agent()
    container = storage.blob_service(agent.conn).get_container_client(f"linkin{uuid.uuid4().hex[:8]}")
    container.create_container()
    container.upload_blob("data.txt", b"the container's data")
    cluster = {"nodeSetup": {"mountVolumes": {"azureBlobFileSystems": [
        {"accountName": AZURITE_ACCOUNT, "containerName": container.container_name, "credentials": KEY,
         "relativeMountPath": "bfs"}]}}}
    agent.send_setup(cluster)
    events.wait(agent.node_id, "node-ready", timeout=30)
    victim = tmp_path / "victim.txt"
    victim.write_text("the host's file")
    container.upload_blob("data.txt", b"changed in the container", overwrite=True)
    local = agent.mount_root / "bfs" / "data.txt"
    local.unlink()
    local.symlink_to(victim)  # left by an earlier job: the blob mount is open to every job
    _, exited = run(agent, events, job_props('cat "$AZ_BATCHAI_MOUNT_ROOT/bfs/data.txt"'), cluster=cluster)
    assert exited["exit_code"] == 0, exited
    assert victim.read_text() == "the host's file"
    assert not local.is_symlink() and local.read_text() == "changed in the container"


# --- the primitives ----------------------------------------------------------------------------

@pytest.mark.parametrize("relative", ["../x", "a/../../x", "/..", ".."])
def test_relative_paths_that_climb_are_refused(relative: str) -> None:
    with pytest.raises(PathEscape):
        relative_parts(relative, "path")


def test_files_under_lists_regular_files_and_no_link(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f.txt").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "d" / "f.txt")
    (tmp_path / "dirlink").symlink_to(tmp_path / "d")
    os.mkfifo(tmp_path / "fifo")
    assert files_under(tmp_path) == ["d/f.txt"]


def test_create_under_replaces_a_linked_directory_on_the_way(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "sub").symlink_to(outside)
    with create_under(root, "sub/f.txt") as f:
        f.write(b"data")
    assert list(outside.iterdir()) == []
    assert (root / "sub").is_dir() and not (root / "sub").is_symlink()
    assert (root / "sub" / "f.txt").read_bytes() == b"data"
