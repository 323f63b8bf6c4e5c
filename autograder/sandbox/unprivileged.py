"""The plain sandbox with the kernel under a uid of the grader's own, swept clean after each kernel.

For a container where bubblewrap cannot run, as on Gradescope: the grader is root there, without
the capabilities a namespace or a cgroup of its own needs, and everything in the container is the
course's (one submission per container). The kernel runs as `uid` (nobody); nothing else does.
When the sandbox closes, everything that uid left in the container is removed, so that no run of a
notebook (hw4 runs it up to three times) finds what an earlier one left:

- its processes: `kill(-1, SIGKILL)` as that uid, until none is left (a daemon, a fork bomb);
- its files and folders, wherever it could write (found once per process by walking the local file
  systems: folders writable by the uid, its group, or everyone: /tmp, /var/tmp, /dev/shm, the
  POSIX message queue folder, ...);
- its SysV shared memory segments, semaphore sets and message queues;
- its keys: the prologue forgets them at every kernel start (`forget`), so that a key one
  container's kernel adds under the uid (keyrings are per uid of the host's user namespace, shared
  by every container of the machine) reaches no later kernel.

What this cannot remove (and is known): changes the uid could make to files it does not own but may
write (a world-writable regular file: none in the grading image), and timestamps of files it may
only read (access times). The kernel's CPU time is not measured here (no cgroup of its own).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import select
import signal
import stat
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from autograder.sandbox.limits import Limits
from autograder.sandbox.plain import PlainSandbox

NOBODY = 65534
# File systems that hold nothing a process could leave behind, or that are not this machine's.
UNSWEPT_TYPES = frozenset({"proc", "sysfs", "cgroup", "cgroup2", "devpts", "debugfs", "tracefs", "securityfs",
                           "pstore", "bpf", "configfs", "fusectl", "binfmt_misc", "autofs", "efivarfs", "nfs",
                           "nfs4", "cifs", "smb3", "9p", "fuse", "nsfs"})
KILL_ROUNDS = 200
IPC_RMID = 0
AS_UID_TIMEOUT = 30.0  # seconds a sweeping child may take before it is killed and reported
# Loaded here, not in the forked child: dlopen or an import there could wait for a lock that
# another thread of the grader held at the fork.
LIBC = ctypes.CDLL(None, use_errno=True)


class SandboxLeftovers(RuntimeError):
    """Something of the kernel's uid survived the sweep: a grader fault, not the student's."""


class UnprivilegedSandbox(PlainSandbox):
    forget_keys = True  # the uid is the sandbox's: keys it holds on the host are no one else's
    def __init__(self, limits: Limits, home_files: dict[str, bytes] | None = None,
                 data: dict[str, Path] | None = None, kernel_uid: int = NOBODY) -> None:
        super().__init__(limits, home_files, data)
        self.kernel_uid = kernel_uid

    def __enter__(self) -> UnprivilegedSandbox:
        writable_places(self.kernel_uid)  # before the first kernel: only places that were there
        super().__enter__()
        os.chmod(self.base, 0o711)
        for path in [self.home, *self.home.rglob("*"), self.ipc]:
            os.chown(path, self.kernel_uid, self.kernel_uid)
        return self

    def __exit__(self, *exc: object) -> None:
        left = sweep(self.kernel_uid)
        super().__exit__(*exc)
        if left:  # the next kernel could find it: no submission may be graded on
            raise SandboxLeftovers(f"the sandbox could not remove what uid {self.kernel_uid} left: "
                                   f"{'; '.join(left[:10])}")

    @property
    def uid(self) -> int:
        return self.kernel_uid

    def kill_all(self) -> None:
        """A kernel that floods or ignores its interrupt: every process of the uid, at once."""
        kill_processes(self.kernel_uid)

    def wrap(self, argv: list[str]) -> list[str]:
        uid = self.kernel_uid
        return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--", *super().wrap(argv)]


def sweep(uid: int) -> list[str]:
    """Remove every process, file, folder and SysV object of `uid`; what could not be removed."""
    left = kill_processes(uid)
    for place in writable_places(uid):
        left += _remove_owned(Path(place), uid)
    return left


def kill_processes(uid: int) -> list[str]:
    """Kill the uid's processes and remove its SysV objects, from a child that is that uid: the
    owner may remove them where root may not (no CAP_SYS_ADMIN in a container)."""
    for _ in range(KILL_ROUNDS):
        failed = _as_uid(uid, _kill_all_and_remove_sysv)
        if failed:
            return [failed]
        if not _processes_of(uid):
            return []
        time.sleep(0.01)
    return [f"process {pid}" for pid in _processes_of(uid)]


def _as_uid(uid: int, work: Callable[[], None]) -> str:
    """Run `work` in a forked child as `uid`; what went wrong there, or ''."""
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read)
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            work()
            code = 0
        except BaseException as error:  # noqa: BLE001 - reported to the parent, whatever it is
            os.write(write, f"{type(error).__name__}: {error}".encode()[:1000])
            code = 1
        os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        ready, _, _ = select.select([pipe], [], [], AS_UID_TIMEOUT)
        said = pipe.read().decode(errors="replace") if ready else f"the sweep as uid {uid} did not finish"
    if not ready:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)
    return said


def _kill_all_and_remove_sysv() -> None:
    with contextlib.suppress(ProcessLookupError):  # none left but this one
        os.kill(-1, signal.SIGKILL)  # as the uid: exactly its processes, all at once, not this one
    left = _remove_sysv(os.getuid())
    if left:
        raise OSError(f"could not remove {', '.join(left)}")


def _processes_of(uid: int) -> list[int]:
    """Live processes of `uid` (zombies are dead: their parent has yet to collect them)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as status:
                fields = dict(line.split(":", 1) for line in status if ":" in line)
        except OSError:
            continue  # gone meanwhile
        if str(uid) in fields.get("Uid", "").split() and not fields.get("State", "").strip().startswith("Z"):
            pids.append(int(entry))
    return pids


@functools.cache
def writable_places(uid: int) -> tuple[str, ...]:
    """Folders `uid` may create entries in (as itself, in its own group), the top ones only."""
    places: list[str] = []
    for root, dirs, _ in os.walk("/"):
        if root in _unswept_mounts():
            dirs[:] = []
            continue
        for name in list(dirs):
            path = os.path.join(root, name)
            try:
                info = os.lstat(path)
            except OSError:
                continue
            if _may_write(info, uid):
                places.append(path)
                dirs.remove(name)  # _remove_owned goes through all of it
    return tuple(places)


def _may_write(info: os.stat_result, uid: int) -> bool:
    mode = info.st_mode
    if not stat.S_ISDIR(mode):
        return False
    return bool(mode & stat.S_IWOTH or (info.st_uid == uid and mode & stat.S_IWUSR)
                or (info.st_gid == uid and mode & stat.S_IWGRP))


@functools.cache
def _unswept_mounts() -> frozenset[str]:
    mounts = set()
    with open("/proc/self/mountinfo") as table:
        for line in table:
            fields = line.split()
            separator = fields.index("-")
            if fields[separator + 1] in UNSWEPT_TYPES or fields[separator + 1].startswith("fuse."):
                mounts.add(fields[4].replace("\\040", " "))
    return frozenset(mounts)


def _remove_owned(folder: Path, uid: int) -> list[str]:
    """Remove what `uid` owns in `folder` (and `folder` itself if it is the uid's)."""
    try:
        info = os.lstat(folder)
    except OSError:
        return []
    if info.st_uid == uid:
        return _remove(folder)
    left = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    for entry in entries:
        try:
            owner = entry.stat(follow_symlinks=False).st_uid
            is_dir = entry.is_dir(follow_symlinks=False)
        except OSError:
            continue
        if owner == uid:
            left += _remove(Path(entry.path))
        elif is_dir:
            left += _remove_owned(Path(entry.path), uid)
    return left


def _remove(path: Path) -> list[str]:
    try:
        if path.is_dir() and not path.is_symlink():
            _remove_tree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        return []
    except OSError as error:
        return [f"{path}: {error.strerror}"]
    return []


def _remove_tree(top: Path) -> None:
    """Remove a folder however deep the uid made it, without recursion and with short paths: each
    subfolder is first moved up beside `top` (same file system), then emptied in its turn. The
    uid's processes are all dead by now: nothing changes the tree meanwhile."""
    queue = [top]
    while queue:
        folder = queue.pop()
        with contextlib.suppress(OSError):
            os.chmod(folder, 0o700)  # a folder the uid made unreadable to itself
        with os.scandir(folder) as entries:
            for entry in list(entries):
                if entry.is_dir(follow_symlinks=False):
                    moved = top.parent / f".autograder-sweep-{uuid.uuid4().hex}"
                    os.rename(entry.path, moved)
                    queue.append(moved)
                else:
                    os.unlink(entry.path)
        os.rmdir(folder)


def _remove_sysv(uid: int) -> list[str]:
    calls = {"shm": lambda i: LIBC.shmctl(i, IPC_RMID, None), "sem": lambda i: LIBC.semctl(i, 0, IPC_RMID),
             "msg": lambda i: LIBC.msgctl(i, IPC_RMID, None)}
    left = []
    for kind, remove in calls.items():  # the rows are those this uid may see: all, in its namespace
        try:
            rows = Path(f"/proc/sysvipc/{kind}").read_text().splitlines()
        except OSError:
            continue
        header = rows[0].split()  # key, then the object's id (shmid, semid, msqid), ...
        for row in rows[1:]:
            values = dict(zip(header, row.split(), strict=False))
            if str(uid) in (values.get("uid"), values.get("cuid")) and remove(int(values[header[1]])) != 0:
                left.append(f"sysv {kind} {values[header[1]]}")
    return left
