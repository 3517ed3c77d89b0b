"""The machine image: Debian bookworm (debootstrap minbase) with systemd, cloud-init and the
emulation helpers, imported into podman as `localhost/batchai-machine:<recipe hash>`.

Owns the recipe, the files under `shared/emulator/image/`: `packages` (one Debian package a line),
`rootfs/` (files copied into the image as they are: cloud-init settings and the stand-ins for
mount.cifs, mount.nfs and blobfuse2) and `setup.sh` (run once inside the new root). The recipe's
hash is the image tag, so an image is built once per recipe and kept in podman's store; parallel
callers (test sessions) build it once, under a file lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from shared.emulator.network import PodmanError, podman, run

RECIPE_DIR = Path(__file__).with_name("image")
REPOSITORY = "localhost/batchai-machine"
SUITE = "bookworm"
VARIANT = "minbase"
MIRROR = "http://deb.debian.org/debian"
LOCK_FILE = Path(tempfile.gettempdir()) / "batchai-machine-image.lock"
BUILD_DIR = Path("/var/tmp")  # debootstrap needs device nodes and exec: not a noexec tmpfs
DEBOOTSTRAP_TIMEOUT_S = 1800
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"

_builds = 0  # images built by this process


def builds() -> int:
    return _builds


def recipe_hash(recipe_dir: Path = RECIPE_DIR) -> str:
    """sha256 over the suite, the variant and every recipe file (path, executable bit, content)."""
    digest = hashlib.sha256(f"{SUITE}\n{VARIANT}\n".encode())
    for path in sorted(p for p in recipe_dir.rglob("*") if p.is_file()):
        relative = path.relative_to(recipe_dir).as_posix()
        executable = "x" if os.access(path, os.X_OK) else "-"
        digest.update(f"{relative}\0{executable}\0{path.stat().st_size}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def image_ref(recipe_dir: Path = RECIPE_DIR) -> str:
    return f"{REPOSITORY}:{recipe_hash(recipe_dir)[:12]}"


def packages(recipe_dir: Path = RECIPE_DIR) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in (recipe_dir / "packages").read_text().splitlines())
    return [line for line in lines if line]


def ensure_image() -> str:
    """The image ref; builds the image first when podman's store lacks it (about 90 s)."""
    ref = image_ref()
    if _exists(ref):
        return ref
    LOCK_FILE.touch(exist_ok=True)
    with open(LOCK_FILE) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not _exists(ref):
            build_image(ref, RECIPE_DIR)
    return ref


def build_image(ref: str, recipe_dir: Path) -> None:
    global _builds
    work = Path(tempfile.mkdtemp(prefix="batchai-machine-", dir=BUILD_DIR))
    root = work / "root"
    try:
        _debootstrap(root, packages(recipe_dir), work / "debootstrap.log")
        _overlay(recipe_dir / "rootfs", root)
        shutil.copy(recipe_dir / "setup.sh", root / "batchai-setup.sh")
        run(["chroot", str(root), "/bin/sh", "/batchai-setup.sh"], timeout=600)
        (root / "batchai-setup.sh").unlink()
        _import(root, ref, recipe_hash(recipe_dir))
        _builds += 1
    finally:
        _remove_tree(work)


def _exists(ref: str) -> bool:
    return podman("image", "exists", ref, check=False).returncode == 0


def _debootstrap(root: Path, include: list[str], log: Path) -> None:
    if shutil.which("debootstrap", path=SYSTEM_PATH) is None:
        raise RuntimeError("building the machine image needs debootstrap: apt-get install debootstrap")
    with open(log, "wb") as out:
        result = subprocess.run(
            ["debootstrap", f"--variant={VARIANT}", f"--include={','.join(include)}", SUITE, str(root), MIRROR],
            stdout=out, stderr=subprocess.STDOUT, timeout=DEBOOTSTRAP_TIMEOUT_S,
            env=dict(os.environ, PATH=SYSTEM_PATH, LANG="C.UTF-8"))
    if result.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"debootstrap {SUITE} exited with {result.returncode}:\n{tail}")


def _overlay(source: Path, root: Path) -> None:
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        destination = root / path.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, destination)
        destination.chmod(0o755 if os.access(path, os.X_OK) else 0o644)


def _import(root: Path, ref: str, full_hash: str) -> None:
    tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
    try:
        imported = subprocess.run(
            ["podman", "import", "--change", 'CMD ["/sbin/init"]', "--change", f"LABEL batchai.recipe={full_hash}",
             "-", ref], stdin=tar.stdout, capture_output=True, text=True, timeout=600)
    finally:
        assert tar.stdout is not None
        tar.stdout.close()
        tar_rc = tar.wait(timeout=600)
    if imported.returncode != 0 or tar_rc != 0:
        raise PodmanError(["podman", "import", ref], imported)
    image_id = imported.stdout.strip().splitlines()[-1]
    podman("tag", image_id, ref)  # podman 4.3 may ignore import's reference: tag it for sure


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root) + "/"
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1].encode().decode("unicode_escape") for line in mounts]
    return sorted((p for p in points if p.startswith(prefix)), reverse=True)


def _remove_tree(work: Path) -> None:
    """A failed debootstrap can leave /proc or /sys mounted in the new root: unmount them before
    deleting, and never delete through a mount."""
    for point in _mounts_under(work):
        run(["umount", "-l", point], check=False)
    if _mounts_under(work):
        raise RuntimeError(f"{work} still has mounts under it: not deleting it")
    shutil.rmtree(work, ignore_errors=True)
