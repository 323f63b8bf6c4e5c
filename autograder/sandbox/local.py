"""The local sandbox: bubblewrap namespaces + an unprivileged uid + cgroup limits.

What student code sees: the Python environment (read-only), system libraries, a private tmpfs home
with the student files, the data it is given (read-only) and nothing else; in particular not the
course folder, hidden tests, the grader's temp files, other submissions or the network. It runs as a
uid of its own (one per concurrent slot, so per-user limits never mix), in its own pid namespace, so
nothing it starts outlives it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

from autograder.sandbox.cgroups import CgroupSet
from autograder.sandbox.limits import Limits

SLOTS = 64
FIRST_UID = 61000
HOME = "/home/student"
DATA = "/data"
SYSTEM_DIRS = ("/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc")
# Host variables worth keeping: some CPUs need OpenBLAS told their core type to compute correctly.
PASSTHROUGH_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "LANG", "TZ")


class SandboxUnavailable(RuntimeError):
    pass


def sandbox_problem() -> str | None:
    """Why the local sandbox cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "the sandbox needs root (to switch to an unprivileged uid and set cgroup limits)"
    if shutil.which("bwrap") is None:
        return "bubblewrap is not installed: run `autograder setup` (or apt-get install bubblewrap)"
    if not CgroupSet.usable():
        return "no writable cgroup hierarchy with the memory and pids controllers"
    return None


class _Slot:
    """A uid of our own for one sandbox at a time, held with a lock file across processes."""

    def __init__(self) -> None:
        lock_dir = Path(tempfile.gettempdir()) / "autograder-slots"
        lock_dir.mkdir(mode=0o700, exist_ok=True)
        for slot in range(SLOTS):
            handle = open(lock_dir / f"{slot}.lock", "w")  # noqa: SIM115 - held for the slot's life
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            self.handle, self.uid = handle, FIRST_UID + slot
            return
        raise SandboxUnavailable(f"all {SLOTS} sandbox slots are busy")

    def release(self) -> None:
        self.handle.close()


def python_dirs() -> list[Path]:
    """What the kernel's interpreter needs: this environment and the interpreter it was made from."""
    dirs = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}
    venv_python = Path(sys.prefix) / "bin" / "python"
    if venv_python.is_symlink():
        dirs.add(venv_python.resolve().parent.parent)
    return sorted(d for d in dirs if not any(str(d).startswith(s + "/") for s in SYSTEM_DIRS))


class LocalSandbox:
    """One submission's sandbox. Use as a context manager; `wrap` turns a command into one that
    runs inside. Files in `home_files` (relative path -> bytes) are copied into the private home;
    `data` (relative path -> host file) appears read-only under /data."""

    def __init__(self, limits: Limits, home_files: dict[str, bytes] | None = None,
                 data: dict[str, Path] | None = None) -> None:
        self.limits = limits
        self.home_files = home_files or {}
        self.data = data

    def __enter__(self) -> LocalSandbox:
        problem = sandbox_problem()
        if problem:
            raise SandboxUnavailable(problem)
        self.slot = _Slot()
        self.base = Path(tempfile.mkdtemp(prefix="autograder-sandbox-"))
        self.ipc = self.base / "ipc"
        self.ipc.mkdir()
        os.chown(self.ipc, self.slot.uid, self.slot.uid)
        self.staged = self.base / "home"
        for relative, content in self.home_files.items():
            target = self.staged / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            os.chmod(target, 0o644)
        self.cgroups = CgroupSet(f"{self.slot.uid}-{uuid.uuid4().hex[:8]}", self.limits.memory_mb,
                                 self.limits.pids)
        return self

    def __exit__(self, *exc: object) -> None:
        self.cgroups.remove()
        shutil.rmtree(self.base, ignore_errors=True)
        self.slot.release()

    @property
    def uid(self) -> int:
        return self.slot.uid

    @property
    def ipc_dir(self) -> Path:
        """Host path of a folder the sandboxed process can write (kernel sockets, connection file)."""
        return self.ipc

    def environment(self) -> dict[str, str]:
        threads = str(self.limits.threads)
        env = {
            "HOME": HOME, "PATH": f"{sys.prefix}/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg", "IPYTHONDIR": f"{HOME}/.ipython",
            "JUPYTER_PLATFORM_DIRS": "1", "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
            "OPENBLAS_NUM_THREADS": threads, "AUTOGRADER_THREADS": threads,
        }
        if self.data:
            env["AUTOGRADER_DATA"] = DATA
        env.update({k: os.environ[k] for k in PASSTHROUGH_ENV if k in os.environ and k != "LANG"})
        return env

    def wrap(self, argv: list[str]) -> list[str]:
        """The command line that runs `argv` inside: a shell joins the cgroups, then execs bwrap."""
        size = str(self.limits.disk_mb * 1024 * 1024)
        cmd = ["bwrap", "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
               "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--clearenv"]
        for key, value in self.environment().items():
            cmd += ["--setenv", key, value]
        for system_dir in SYSTEM_DIRS:
            if Path(system_dir).exists():
                cmd += ["--ro-bind", system_dir, system_dir]
        for python_dir in python_dirs():
            for parent in reversed(python_dir.parents[:-1]):
                cmd += ["--perms", "0755", "--dir", str(parent)]
            cmd += ["--ro-bind", str(python_dir), str(python_dir)]
        cmd += ["--proc", "/proc", "--dev", "/dev",
                "--size", size, "--perms", "01777", "--tmpfs", "/tmp",
                "--perms", "0755", "--dir", "/home",
                "--size", size, "--perms", "01777", "--tmpfs", HOME,
                ]
        for parent in reversed(self.ipc.parents[:-1]):
            cmd += ["--perms", "0755", "--dir", str(parent)]
        # Same path inside and out: the kernel's sockets are named in its connection file.
        cmd += ["--bind", str(self.ipc), str(self.ipc)]
        for staged in sorted(self.staged.rglob("*")) if self.staged.exists() else []:
            if staged.is_file():
                cmd += ["--ro-bind", str(staged), f"{HOME}/{staged.relative_to(self.staged)}"]
        for relative, host in sorted((self.data or {}).items()):
            target = Path(DATA) / relative
            for parent in reversed(target.parents[:-1]):
                cmd += ["--perms", "0755", "--dir", str(parent)]
            cmd += ["--ro-bind", str(host), str(target)]
        cmd += ["--chdir", HOME, "setpriv", f"--reuid={self.slot.uid}", f"--regid={self.slot.uid}",
                "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--", *argv]
        join = "".join(f'echo $$ > "{procs}" && ' for procs in self.cgroups.procs_files())
        return ["/bin/sh", "-c", join + 'exec "$@"', "sandbox", *cmd]

    def kill_all(self) -> None:
        self.cgroups.kill_all()

    def oom_kills(self) -> int:
        return self.cgroups.oom_kills()

    def peak_memory_mb(self) -> float:
        return self.cgroups.peak_memory_mb()
