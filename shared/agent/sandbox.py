"""Starting a job's process as its own user: the launcher the agent runs (as root) in place of the
task's command, which drops to the job's uid and gid and then becomes the command.

The launcher reads what to run (argv, environment, working directory, uid, gid, view) from a
descriptor the agent passes it, never from its own environment or command line: the environment
holds the job's secrets (a command line is readable by every user), and a root process must not
start with variables the job chose (LD_PRELOAD). It clears the supplementary groups, sets
no_new_privs (no setuid program gives the job root back) and execs the command.

The view: a job user must reach its directories, the mounts and the node's Python, but a directory
on the way may let only root in (a node whose working directory lies under a private directory,
such as the process topology's nodes under the stack's state directory, or a Python installed in
root's home). For each such directory, and for each directory on the way under a `hidden` root (the
process topology's state directory, where every node, share and job of the stack lies side by
side), the launcher gives the job a private mount namespace in which it is a read-only tmpfs
holding only the entries on the way, bound from the real ones: the job reaches what it was given
and sees nothing else of that directory. What it was given it sees whole. Where no directory on the
way stops the job and nothing is hidden (a machine), there is no view and no namespace.

Run as a file (``python -I -S sandbox.py FD``): it imports nothing but the standard library.
"""

from __future__ import annotations

import ctypes
import json
import os
import stat
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
PR_SET_NO_NEW_PRIVS = 38
LAUNCH_FAILED = 127  # the exit code when the launcher cannot start the command (its reason is on stderr)

View = tuple[tuple[str, tuple[str, ...]], ...]  # (a directory the job may not enter, the entries it must reach)


def _searchable(directory: Path, uid: int, gid: int) -> bool:
    st = directory.stat()
    bit = 0o100 if st.st_uid == uid else 0o010 if st.st_gid == gid else 0o001
    return bool(st.st_mode & bit)


def _within(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def view_for(paths: Iterable[Path], uid: int, gid: int, hidden: Iterable[Path] = ()) -> View:
    """For every directory on the way to `paths` (resolved) that the user may not enter, or that lies
    under a `hidden` root: the entries of it on the way. Shallow directories first (a deeper one is
    reached through the view above it); none inside one of `paths` (those are seen whole)."""
    reals = [Path(path).resolve() for path in paths]
    hidden_roots = [Path(root).resolve() for root in hidden]
    needed: dict[Path, set[str]] = {}
    for real in reals:
        for ancestor in reversed(real.parents):
            if _within(ancestor, reals):
                continue
            child = real.relative_to(ancestor).parts[0]
            if _within(ancestor, hidden_roots) or not _searchable(ancestor, uid, gid):
                needed.setdefault(ancestor, set()).add(child)
    return tuple((str(d), tuple(sorted(needed[d]))) for d in sorted(needed, key=lambda d: (len(d.parts), str(d))))


def spec_fd(argv: Sequence[str], env: dict[str, str], cwd: str, uid: int, gid: int, view: View) -> int:
    """An in-memory file holding what the launcher runs, for `pass_fds`."""
    data = json.dumps({"argv": list(argv), "env": env, "cwd": cwd, "uid": uid, "gid": gid,
                       "view": [[d, list(entries)] for d, entries in view]}).encode()
    fd = os.memfd_create("batchai-launch")
    view_bytes = memoryview(data)
    while view_bytes:
        view_bytes = view_bytes[os.write(fd, view_bytes):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def launcher_argv(fd: int) -> list[str]:
    return [sys.executable, "-I", "-S", str(Path(__file__).resolve()), str(fd)]


# --- in the launcher process ------------------------------------------------------------------

def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


def _call(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def _mount(libc: Any, source: str | None, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    def b(text: str | None) -> bytes | None:
        return None if text is None else text.encode()
    _call(libc.mount(b(source), b(target), b(fstype), flags, b(data)), f"mount {target}")


def make_view(view: Sequence[Sequence[Any]]) -> None:
    libc = _libc()
    _call(libc.unshare(CLONE_NEWNS), "unshare")
    _mount(libc, None, "/", None, MS_REC | MS_PRIVATE, None)
    for directory, entries in view:
        held = [(name, os.open(os.path.join(directory, name), os.O_PATH | os.O_NOFOLLOW)) for name in entries]
        _mount(libc, "tmpfs", directory, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k")
        for name, fd in held:
            target = os.path.join(directory, name)
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                os.mkdir(target)
            else:
                os.close(os.open(target, os.O_WRONLY | os.O_CREAT, 0o644))
            _mount(libc, f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC, None)
            os.close(fd)
        _mount(libc, None, directory, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, None)


def launch(spec: dict[str, Any]) -> None:
    """Become the job's command as its user (never returns)."""
    if spec["view"]:
        make_view(spec["view"])
    os.setgroups([])
    os.setresgid(spec["gid"], spec["gid"], spec["gid"])
    os.setresuid(spec["uid"], spec["uid"], spec["uid"])
    _call(_libc().prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    os.umask(0o022)
    os.chdir(spec["cwd"])
    os.execvpe(spec["argv"][0], spec["argv"], spec["env"])


def main(argv: list[str]) -> int:
    try:
        with os.fdopen(int(argv[1]), "rb") as f:
            spec = json.load(f)
        launch(spec)
    except Exception as error:  # the task's stderr is this process's: the reason lands there
        print(f"batchai: cannot start the task as its user: {error}", file=sys.stderr)
    return LAUNCH_FAILED


if __name__ == "__main__":
    sys.exit(main(sys.argv))
