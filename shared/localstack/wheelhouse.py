"""The node agent's wheelhouse: the project's wheel and its pinned dependencies, as files nodes install
with `pip install --no-index --find-links` (no package index at boot), published to the service's
`batchai-wheelhouse` container, whose blobs nodes download with read-only SAS from the service.

Dependencies are downloaded once per (pins, extras, target Python) into a cache directory; the
project's wheel is rebuilt when its sources change. The pins are requirements.txt's (the lock):
pyproject's dependencies resolved under it as constraints. Extras are requirements a stack wants on
its nodes too (the machine topology's tests ask for the CPU torch wheel).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import ContainerClient, ContentSettings

from shared.adapters import storage

ROOT = Path(__file__).resolve().parents[2]
# glibc 2.36 (Debian 12, the emulator's image) and newer (Ubuntu 24.04): every manylinux tag up to 2.36.
PLATFORMS = [arg for tag in ("manylinux1", "manylinux2010", "manylinux2014", "manylinux_2_12", "manylinux_2_17",
                             "manylinux_2_28", "manylinux_2_34", "manylinux_2_35", "manylinux_2_36")
             for arg in ("--platform", f"{tag}_x86_64")]
CACHE = Path(os.environ.get("BATCHAI_CACHE_DIR", Path.home() / ".cache" / "batchai"))


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
        h.update(b"\0")
    return h.hexdigest()[:16]


def agent_requirements() -> list[str]:
    return list(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])


def _sources_digest() -> str:
    files = sorted(p for d in ("shared", "functions") for p in (ROOT / d).rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts)
    return _digest((ROOT / "pyproject.toml").read_bytes(),
                   *(str(p.relative_to(ROOT)).encode() + p.read_bytes() for p in files))


def build_wheelhouse(extras: Sequence[str] = (), python_version: str = "3.11", cache: Path = CACHE) -> Path:
    """A directory holding the project's wheel and every wheel it needs (plus `extras`) for CPython
    `python_version` on x86-64 Linux. Builds only what changed since the last call."""
    pins = (ROOT / "requirements.txt").read_bytes() + (ROOT / "requirements-dev.txt").read_bytes()
    wanted = [*agent_requirements(), *extras]
    deps = cache / "wheelhouse" / f"deps-{_digest(pins, ' '.join(wanted).encode(), python_version.encode())}"
    if not (deps / ".complete").exists():
        deps.mkdir(parents=True, exist_ok=True)
        constraints = deps / "constraints.txt"  # pins only: a `-r` line in a constraints file would add requirements
        constraints.write_text("".join(line + "\n" for name in ("requirements.txt", "requirements-dev.txt")
                                       for line in (ROOT / name).read_text().splitlines()
                                       if line.strip() and not line.startswith(("#", "-"))))
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "-d", str(deps),
             "--only-binary=:all:", "--python-version", python_version, *PLATFORMS,
             "-c", str(constraints), *wanted],
            check=True, cwd=ROOT)
        (deps / ".complete").write_text("\n".join(sorted(p.name for p in deps.glob("*.whl"))))
    house = cache / "wheelhouse" / f"house-{deps.name}-{_sources_digest()}"
    if not (house / ".complete").exists():
        shutil.rmtree(house, ignore_errors=True)
        house.mkdir(parents=True)
        for wheel in deps.glob("*.whl"):
            os.link(wheel, house / wheel.name)
        build = house / ".build"
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--no-deps",
                        "--no-build-isolation", "-w", str(build), str(ROOT)], check=True, cwd=ROOT,
                       stdout=subprocess.DEVNULL)
        for wheel in build.glob("*.whl"):
            os.replace(wheel, house / wheel.name)
        shutil.rmtree(build, ignore_errors=True)
        (house / ".complete").write_text("\n".join(sorted(p.name for p in house.glob("*.whl"))))
    return house


def publish(conn: str, house: Path) -> list[str]:
    """Make the wheelhouse container hold exactly `house`'s wheels; the names uploaded."""
    container: ContainerClient = storage.container(conn, storage.C_WHEELHOUSE)
    if not container.exists():
        container.create_container()
    present = {b.name: b.content_settings.content_md5 for b in container.list_blobs()}
    wanted = {p.name: p for p in house.glob("*.whl")}
    uploaded = []
    for name, path in sorted(wanted.items()):
        data = path.read_bytes()
        md5 = hashlib.md5(data).digest()  # noqa: S324 - Blob storage's content checksum, not security
        if present.get(name) is not None and bytes(present[name]) == md5:
            continue
        container.upload_blob(name, data, overwrite=True,
                              content_settings=ContentSettings(content_type="application/zip", content_md5=md5))
        uploaded.append(name)
    for name in set(present) - set(wanted):
        with contextlib.suppress(ResourceNotFoundError):
            container.delete_blob(name)
    return uploaded


def main(argv: list[str] | None = None) -> int:
    """`python -m shared.localstack.wheelhouse [--python-version 3.12]`: build it, print its directory
    (infra/deploy.sh uploads it to the service account's wheelhouse container)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m shared.localstack.wheelhouse", description=main.__doc__)
    parser.add_argument("--python-version", default="3.12", help="the nodes' Python (Ubuntu 24.04: 3.12)")
    parser.add_argument("--extra", action="append", default=[], help="another requirement nodes get too")
    args = parser.parse_args(argv)
    print(build_wheelhouse(args.extra, args.python_version))
    return 0


if __name__ == "__main__":
    sys.exit(main())
