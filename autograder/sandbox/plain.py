"""No wall at all: the notebook runs as the current user, in a private temporary home.

Only for `autograder validate` on a student's own machine (their own code, no hidden tests), where
the sandbox's root and bubblewrap requirements would be in the way, and (run as nobody) inside
Gradescope's container where bubblewrap cannot run (each submission has a container of its own
there). What is kept apart, by the prologue (`autograder.sandbox.prologue`) each kernel runs first:

- its session keyring is a new one, never the caller's (the grader's, or a login session's);
- where the system lets an unprivileged process make one (not under Docker's default seccomp
  profile, nor where user namespaces are switched off), a user namespace of its own, the uid mapped
  to itself, so its user, user-session and persistent keyrings are new and die with it, and in it a
  SysV IPC namespace of its own (shared memory, semaphores, message queues, POSIX message queues).

What is not: the file system (the user's /tmp, /var/tmp, /dev/shm and all their files are there,
writable as that user), the network and abstract Unix sockets, other processes (what the kernel
starts may outlive it), and keys the uid owns in the host's user namespace (reachable by serial
number from any user namespace: they are the user's own, or shared by every process of that uid,
so they are not the prologue's to delete). Nor any memory, process or disk limit.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from autograder.sandbox.limits import Limits
from autograder.sandbox.prologue import with_prologue


class PlainSandbox:
    forget_keys = False  # the uid is the caller's own: its keys are not the sandbox's to forget

    def __init__(self, limits: Limits, home_files: dict[str, bytes] | None = None,
                 data: dict[str, Path] | None = None) -> None:
        self.limits = limits
        self.home_files = home_files or {}
        self.data = data

    def __enter__(self) -> PlainSandbox:
        self.base = Path(tempfile.mkdtemp(prefix="autograder-validate-"))
        self.home = self.base / "home"
        self.home.mkdir()
        for relative, content in self.home_files.items():
            (self.home / relative).parent.mkdir(parents=True, exist_ok=True)
            (self.home / relative).write_bytes(content)
        self.ipc = self.base / "ipc"
        self.ipc.mkdir()
        for relative, host in (self.data or {}).items():
            # Copies, readable by any uid the kernel runs as: a symlink would show where the grader
            # keeps its files, and reach them only if the kernel could read the folder itself.
            target = self.base / "data" / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(host, target)
            os.chmod(target, 0o644)
            for folder in [target.parent, *target.parent.parents]:
                if folder == self.base:
                    break
                os.chmod(folder, 0o755)
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.base, ignore_errors=True)

    @property
    def uid(self) -> int:
        return os.getuid()

    @property
    def ipc_dir(self) -> Path:
        return self.ipc

    def wrap(self, argv: list[str]) -> list[str]:
        threads = str(self.limits.threads)
        env = {"HOME": str(self.home), "PATH": f"{sys.prefix}/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
               "MPLBACKEND": "Agg", "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
               "OPENBLAS_NUM_THREADS": threads, "AUTOGRADER_THREADS": threads}
        if self.data:
            env["AUTOGRADER_DATA"] = str(self.base / "data")
        settings = [f"{k}={v}" for k, v in env.items()]
        # A kernel run as root is the host's root in any namespace: only its session keyring is new.
        user_namespace = "skip" if self.uid == 0 else "try"
        return ["/bin/sh", "-c", 'cd "$0" && exec "$@"', str(self.home), "env", "-i", *settings,
                *with_prologue(argv[0], argv, user_namespace, forget=self.forget_keys)]

    def started(self, timeout: float, alive: Callable[[], bool]) -> None:
        """The kernel's command has started: nothing else to do (see LocalSandbox.started)."""

    def kernel_kept(self) -> bool:
        return True  # the kernel is the command's own process: nothing else keeps it

    def template_failed(self) -> bool:
        return False  # its kernels are never forked from a template

    def kill_all(self) -> None:
        pass  # the kernel manager kills the kernel process itself

    def oom_kills(self) -> int:
        return 0

    def cpu_seconds(self) -> float | None:
        return None  # no cgroup of its own: budgets fall back to the cells' wall-clock time

    def peak_memory_mb(self) -> float:
        return float("nan")
