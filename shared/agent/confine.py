"""Paths of a job on its node kept where they belong: resolved and contained under their roots, and
opened without following symbolic links.

Jobs write into directories the agent later reads or writes (stdout files, output directories,
emulated blob mounts, shares other jobs write into too). Any of them may hold a symbolic link, a
FIFO, or have a link swapped in while the agent works. So the agent:
- resolves every path derived from input and checks that it lies under one of its roots
  (`contained`); a path that leaves them is refused, never created;
- holds a directory it made for a job open (`HeldDir`): its real path is read back from the open
  descriptor (so a link swapped in before it was opened is seen), and the agent reaches the files
  in it through that descriptor (``/proc/self/fd/<fd>/<name>``), never through the path again;
- opens files with O_NOFOLLOW and O_NONBLOCK and uses them only when they are regular files
  (`open_file`), and walks and opens files below a directory one component at a time, never
  following a link (`files_under`, `open_under`, `create_under`): a link below is skipped (read) or
  replaced (written), never followed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class PathEscape(ValueError):
    """A path derived from input that leaves its roots (or goes through a link it may not follow)."""


def under(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def contained(path: Path, roots: Iterable[Path], what: str) -> Path:
    """`path` resolved (every link followed); PathEscape unless it lies under one of `roots` (resolved)."""
    resolved = path.resolve()
    real_roots = [Path(root).resolve() for root in roots]
    if not under(resolved, real_roots):
        raise PathEscape(f"{what} {path} resolves to {resolved}, outside {', '.join(map(str, real_roots))}")
    return resolved


def plain_name(name: str, what: str) -> str:
    """A single path component: not empty, not '.' or '..', no '/' or NUL."""
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        raise PathEscape(f"{what} {name!r} is not a plain name")
    return name


def relative_parts(relative: str, what: str) -> list[str]:
    """The components of a relative path that stays where it starts: no '..', no empty or '.' parts."""
    parts = [part for part in relative.split("/") if part not in ("", ".")]
    for part in parts:
        plain_name(part, what)
    return parts


def fd_path(fd: int) -> Path:
    """The real path of an open file or directory, as the kernel knows it."""
    return Path(os.readlink(f"/proc/self/fd/{fd}"))


class HeldDir:
    """A directory the agent made for a job, held open for the task's life. `path` is its real path;
    `entry(name)` is how the agent reaches a file in it (through the descriptor)."""

    def __init__(self, path: Path, roots: Iterable[Path], what: str) -> None:
        self.fd = os.open(path, _DIR_FLAGS)
        try:
            self.path = fd_path(self.fd)
            real_roots = [Path(root).resolve() for root in roots]
            if not under(self.path, real_roots):
                raise PathEscape(f"{what} {path} is {self.path}, outside {', '.join(map(str, real_roots))}")
        except BaseException:
            os.close(self.fd)
            raise

    def entry(self, name: str) -> Path:
        return Path(f"/proc/self/fd/{self.fd}") / plain_name(name, "file name")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _regular(fd: int, what: object) -> int:
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, f"{what} is not a regular file")
    return fd


def open_fd(path: Path | str, flags: int, mode: int = 0o644, dir_fd: int | None = None) -> int:
    """os.open that never follows a link at the last component, never blocks on a FIFO, and refuses
    anything but a regular file (OSError)."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    return _regular(fd, path)


def open_file(path: Path | str, mode: str) -> IO[Any]:
    """A regular file opened as `open(path, mode)` would ('rb', 'ab', 'wb', 'a', 'w'), without following a link."""
    flags = {"r": os.O_RDONLY, "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
             "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC}[mode[0]]
    fd = open_fd(path, flags)
    os.set_blocking(fd, True)
    return os.fdopen(fd, mode)


def touch(path: Path | str) -> None:
    os.close(open_fd(path, os.O_WRONLY | os.O_CREAT))


def files_under(root: Path) -> list[str]:
    """Relative paths (with '/') of the regular files below `root`, sorted; links are not followed
    (neither linked files nor linked directories are listed). Nothing when `root` is not a directory."""
    try:
        top = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return []
    found: list[str] = []
    try:
        for dirpath, _, filenames, dir_fd in os.fwalk(".", dir_fd=top):
            for name in filenames:
                try:
                    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    found.append(os.path.normpath(os.path.join(dirpath, name)))
    finally:
        os.close(top)
    return sorted(found)


@contextlib.contextmanager
def _walk(root: Path, parts: list[str], create: bool) -> Iterator[int]:
    """The descriptor of the directory `root/parts...`, reached one component at a time without
    following a link; with `create`, missing directories are made and links in the way replaced."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts:
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as error:
                if not create or error.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                    raise
                if error.errno != errno.ENOENT:
                    os.unlink(part, dir_fd=fd)  # a link or a file where a directory belongs
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def open_under(root: Path, relative: str) -> IO[bytes]:
    """The regular file `root/relative` for reading, reached without following any link below `root`."""
    *dirs, name = relative_parts(relative, "file path")
    with _walk(root, dirs, create=False) as parent:
        fd = open_fd(name, os.O_RDONLY, dir_fd=parent)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def create_under(root: Path, relative: str) -> IO[bytes]:
    """`root/relative` created (or truncated) for writing; directories on the way are made, and a link
    in the way (at any component) is removed rather than followed."""
    *dirs, name = relative_parts(relative, "file path")
    with _walk(root, dirs, create=True) as parent:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            if stat.S_ISLNK(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode):
                os.unlink(name, dir_fd=parent)
        fd = open_fd(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, dir_fd=parent)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "wb")


def stat_under(root: Path, relative: str) -> os.stat_result | None:
    """lstat of `root/relative` reached without following links; None when it is missing or not reachable."""
    *dirs, name = relative_parts(relative, "file path")
    try:
        with _walk(root, dirs, create=False) as parent:
            return os.stat(name, dir_fd=parent, follow_symlinks=False)
    except OSError:
        return None
