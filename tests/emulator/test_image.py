"""The machine image: built once per recipe and reused; the recipe decides the tag."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from shared.emulator import image


def _image_id(ref: str) -> str:
    return subprocess.run(["podman", "image", "inspect", "--format", "{{.Id}}", ref],
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.podman
def test_ensure_image_returns_the_same_image_without_rebuilding(machine_image: str) -> None:
    built_so_far = image.builds()
    before = _image_id(machine_image)
    assert image.ensure_image() == machine_image
    assert image.builds() == built_so_far
    assert _image_id(machine_image) == before
    assert machine_image == f"localhost/batchai-machine:{image.recipe_hash()[:12]}"
    labels = json.loads(subprocess.run(["podman", "image", "inspect", "--format", "{{json .Labels}}", machine_image],
                                       capture_output=True, text=True, check=True).stdout)
    assert labels["batchai.recipe"] == image.recipe_hash()


@pytest.fixture
def recipe_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "recipe"
    shutil.copytree(image.RECIPE_DIR, copy)
    return copy


def test_the_recipe_hash_depends_on_content_not_location(recipe_copy: Path) -> None:
    assert image.recipe_hash(recipe_copy) == image.recipe_hash()
    assert image.image_ref(recipe_copy) == image.image_ref()


def test_a_changed_package_list_changes_the_tag(recipe_copy: Path) -> None:
    packages = recipe_copy / "packages"
    packages.write_text(packages.read_text() + "strace\n")
    assert image.image_ref(recipe_copy) != image.image_ref()
    assert image.packages(recipe_copy)[-1] == "strace"


def test_a_changed_helper_or_a_lost_executable_bit_changes_the_tag(recipe_copy: Path) -> None:
    helper = recipe_copy / "rootfs" / "usr" / "sbin" / "mount.cifs"
    original = image.recipe_hash(recipe_copy)
    helper.chmod(0o644)
    without_x = image.recipe_hash(recipe_copy)
    helper.chmod(0o755)
    helper.write_text(helper.read_text() + "# changed\n")
    assert len({original, without_x, image.recipe_hash(recipe_copy)}) == 3


def test_a_new_recipe_file_changes_the_tag(recipe_copy: Path) -> None:
    (recipe_copy / "rootfs" / "etc" / "motd").write_text("hello\n")
    assert image.recipe_hash(recipe_copy) != image.recipe_hash()

