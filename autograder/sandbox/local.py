"""The local sandbox: bubblewrap namespaces + an unprivileged uid of its own + cgroup limits.

What student code sees: the Python environment (read-only), system libraries, a private tmpfs home
with the student files, the data it is given (read-only) and nothing else; in particular not the
course folder, hidden tests, the grader's temp files, other submissions or the network. It runs as a
uid of its own (one per concurrent slot, so per-user limits never mix), in its own pid namespace, so
nothing it starts outlives it.

Nothing a kernel leaves anywhere outlives it, so nothing reaches the next submission (same slot uid
or not): its home, /tmp and /dev live in its own mount namespace, SysV IPC and POSIX message queues
in its own ipc namespace, abstract Unix sockets in its own network namespace, its processes in its
own pid namespace. It can write nowhere else but the kernel's ipc folder, which the sandbox removes
(its /dev/shm is a tmpfs of its own, it has no /var, the environment and the data are read-only). Kernel
keyrings, which no namespace but the user namespace covers, are the prologue's work
(`autograder.sandbox.prologue`): each kernel has a user namespace and a session keyring of its own.

The order of the walls, from the grader in:
1. `sh`, as root, moves itself into the sandbox's cgroups (memory, pids) and execs
2. `bwrap`, as root: new mount, pid, ipc, uts, network and cgroup namespaces, a new session,
   death with its parent; the sandbox's own mounts first (/proc, /dev, the tmpfs /tmp and home),
   then the host's on top of them (system folders, the Python environment, the kernel's ipc folder,
   the student files, the data), so that none of its own ever hides the interpreter, the
   environment or the data, wherever the checkout is (under /tmp too); then
3. `setpriv` drops to the slot's uid and gid with no groups and no capabilities, then
4. the prologue, already unprivileged, forgets the uid's host keys, makes its user namespace
   (the uid mapped to itself: a user namespace made by root could map the student to host root)
   and joins a new session keyring, then execs
5. the kernel.
bwrap runs as root rather than unprivileged inside the user namespace because it must bind paths
the slot's uid cannot reach (an interpreter under /root, data in a folder private to the grader).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from autograder.sandbox.cgroups import CgroupSet
from autograder.sandbox.limits import Limits
from autograder.sandbox.prologue import with_prologue
from autograder.sandbox.template import TemplateUnavailable, template_for

SLOTS = 64
FIRST_UID = 61000
HOME = "/home/student"
DATA = "/data"
SYSTEM_DIRS = ("/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc")
OWN_MOUNTS = ("/proc", "/dev", "/tmp", HOME, DATA)  # what the sandbox mounts of its own
NOBODY = 65534
IPC_MB, IPC_FILES = 4, 256  # the kernel's socket folder: a connection file and a few sockets per start
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
    return _user_namespace_problem()


@functools.cache
def _user_namespace_problem() -> str | None:
    """Each kernel makes a user namespace as an unprivileged uid: can one here?"""
    if shutil.which("unshare") is None or shutil.which("setpriv") is None:
        return "util-linux's setpriv and unshare are needed (apt-get install util-linux)"
    try:
        done = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--",
                               "unshare", "--user", "--map-current-user", "true"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"could not check for user namespaces: {error}"
    if done.returncode != 0:
        return ("an unprivileged process cannot make a user namespace here (sysctl "
                f"user.max_user_namespaces or kernel.unprivileged_userns_clone?): {done.stderr.strip()}")
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
    """What the kernel's interpreter needs: this environment and the interpreter it was made from.
    They are bound over the sandbox's own mounts, so they may be anywhere but above one of those."""
    dirs = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}
    venv_python = Path(sys.prefix) / "bin" / "python"
    if venv_python.is_symlink():
        dirs.add(venv_python.resolve().parent.parent)
    found = sorted(d for d in dirs if not any(str(d).startswith(s + "/") for s in SYSTEM_DIRS))
    for python_dir in found:
        covered = [m for m in OWN_MOUNTS if Path(m) == python_dir or python_dir in Path(m).parents]
        if covered:
            raise SandboxUnavailable(f"the Python environment {python_dir} contains {covered[0]}, which "
                                     "the sandbox mounts of its own: install it in a folder of its own")
    return found


class LocalSandbox:
    """One submission's sandbox. Use as a context manager; `wrap` turns a command into one that
    runs inside. Files in `home_files` (relative path -> bytes) are copied into the private home;
    `data` (relative path -> host file) appears read-only under /data."""

    def __init__(self, limits: Limits, home_files: dict[str, bytes] | None = None,
                 data: dict[str, Path] | None = None, rerun: bool = False) -> None:
        self.limits = limits
        self.home_files = home_files or {}
        self.data = data
        self.rerun = rerun  # its kernel from the reruns' template (see factory.make_sandbox)
        self.use_template = os.environ.get("AUTOGRADER_KERNEL_TEMPLATE", "1") != "0"
        self._kernel_arguments: list[str] | None = None
        self._kernel_starts = 0
        self._keeper: int | None = None  # a pidfd of the running template kernel's keeper
        self._reserve_mb = 0.0

    def __enter__(self) -> LocalSandbox:
        problem = sandbox_problem()
        if problem:
            raise SandboxUnavailable(problem)
        python_dirs()  # an environment the sandbox cannot show raises here, before anything starts
        self.slot = _Slot()
        self.base = Path(tempfile.mkdtemp(prefix="autograder-sandbox-"))
        self.ipc = self.base / "ipc"
        self.ipc.mkdir()
        # The one folder the kernel shares with the host (its sockets, its connection file) is a
        # small tmpfs of its own: no kernel can fill the host's disk or leave a tree behind there.
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={IPC_MB}m,nr_inodes={IPC_FILES},mode=0700,"
                        f"uid={self.slot.uid},gid={self.slot.uid},nosuid,nodev,noexec", "tmpfs", str(self.ipc)],
                       check=True, capture_output=True)
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
        self._forget_keeper()
        try:
            self.cgroups.remove()
        finally:
            subprocess.run(["umount", "--lazy", str(self.ipc)], capture_output=True)
            shutil.rmtree(self.base, ignore_errors=True)  # only what the grader staged is left
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
            "JUPYTER_PLATFORM_DIRS": "1", "PWD": HOME, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
            "OPENBLAS_NUM_THREADS": threads, "AUTOGRADER_THREADS": threads,
        }
        if self.data:
            env["AUTOGRADER_DATA"] = DATA
        env.update({k: os.environ[k] for k in PASSTHROUGH_ENV if k in os.environ and k != "LANG"})
        return env

    def wrap(self, argv: list[str]) -> list[str]:
        """The command line that runs `argv` inside: a shell joins the cgroups, then execs bwrap.
        A kernel (`argv` runs ipykernel_launcher) is forked from a kernel template where one can
        run (`autograder.sandbox.template`): the command is then the sandbox with a placeholder,
        and `started` puts the kernel in it."""
        self._kernel_arguments = None
        self._forget_keeper()
        if argv[1:3] == ["-m", "ipykernel_launcher"]:
            self._kernel_starts += 1
            if self._reserve_mb:  # the last kernel was a template's: this one may start fresh
                self.cgroups.set_limits(self.limits.memory_mb, self.limits.pids)
                self._reserve_mb = 0.0
            self._clear_ipc(keep=Path(argv[argv.index("-f") + 1]).name if "-f" in argv else None)
            template = template_for(self.template_environment(), int(self.rerun)) if self.use_template else None
            if template is not None:
                self._kernel_arguments, self._template = argv[3:], template
                self._ready = self.ipc / f"placeholder-{uuid.uuid4().hex[:8]}"
                return self._bwrap(["/bin/sh", "-c", f'echo > "{self._ready}" && exec sleep infinity'])
        return self._bwrap(with_prologue(argv[0], argv, "require", forget=True))

    def _clear_ipc(self, keep: str | None) -> None:
        """Before a kernel starts: nothing an earlier kernel of this sandbox left in the socket
        folder (a full folder, a folder where the next connection file goes) is there any more."""
        for entry in os.scandir(self.ipc):
            if entry.name == keep:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)

    def started(self, timeout: float, alive: Callable[[], bool]) -> None:
        """After `wrap`'s command started (`alive` tells whether it still runs): fork the kernel
        into it, nothing to do for a fresh one. A template's kernel shares the template's pages and
        does not pay for them: its memory limit is lowered by what a fresh kernel would have
        allocated itself, and the placeholder gets a process of the limit's own."""
        if self._kernel_arguments is None:
            return
        deadline = time.monotonic() + timeout
        while not self._ready.exists():
            if time.monotonic() > deadline or not alive():
                raise TemplateUnavailable("the sandbox did not come up")
            time.sleep(0.005)
        placeholder = self._placeholder_pid()
        self._reserve_mb = self._template.reserve_mb
        self.cgroups.set_limits(max(64, int(self.limits.memory_mb - self._reserve_mb)), self.limits.pids + 1)
        keeper = self._template.fork(placeholder, self.cgroups.procs_files(), self.slot.uid, self.environment(),
                                     HOME, self._kernel_arguments, forget=True)
        try:
            self._keeper = os.pidfd_open(keeper)
        except ProcessLookupError:
            raise TemplateUnavailable("the kernel's keeper ended at once") from None

    def _forget_keeper(self) -> None:
        if self._keeper is not None:
            os.close(self._keeper)
            self._keeper = None

    def kernel_kept(self) -> bool:
        """False once a template kernel's keeper is gone: without it the sandbox would not end with
        the kernel, so the kernel counts as dead (a fresh kernel: always True)."""
        return self._keeper is None or not select.select([self._keeper], [], [], 0)[0]

    def template_failed(self) -> bool:
        """The kernel just started did not come up: if it was a template's, the caller may start a
        fresh one (True). Only a sandbox's first kernel, before any student code ran in it, tells
        about the template: then the template serves no more kernels."""
        if self._kernel_arguments is None:
            return False
        if self._kernel_starts == 1:
            self._template.failed()
        self._kernel_arguments = None
        self.use_template = False
        return True

    def _placeholder_pid(self) -> int:
        """The host pid of the sandbox's placeholder: its process 2, run as the slot's uid."""
        for procs in self.cgroups.procs_files()[:1]:
            for pid in procs.read_text().split():
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
                if fields.get("NSpid", "").split()[1:] == ["2"] and fields.get("Uid", "").split()[0] == str(self.uid):
                    return int(pid)
        raise TemplateUnavailable("the sandbox's placeholder is not running")

    def template_environment(self) -> dict[str, str]:
        """What a template for this sandbox's kernels is started with: their environment, but for
        what differs between two sandboxes of the same settings."""
        return {k: v for k, v in self.environment().items() if k != "AUTOGRADER_DATA"}

    def _bwrap(self, inner: list[str]) -> list[str]:
        size = str(self.limits.disk_mb * 1024 * 1024)
        cmd = ["bwrap", "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
               "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--clearenv"]
        for key, value in self.environment().items():
            cmd += ["--setenv", key, value]
        # The sandbox's own mounts first: bwrap applies them in order, and whatever of the host's is
        # bound after them is on top, so no tmpfs of ours ever hides the environment (under /tmp?).
        # /dev/shm is a tmpfs of its own too: multiprocessing and DataLoader workers need one.
        cmd += ["--proc", "/proc", "--dev", "/dev", "--size", size, "--perms", "01777", "--tmpfs", "/dev/shm",
                "--size", size, "--perms", "01777", "--tmpfs", "/tmp",
                "--perms", "0755", "--dir", "/home",
                "--size", size, "--perms", "01777", "--tmpfs", HOME]
        for system_dir in SYSTEM_DIRS:
            if Path(system_dir).exists():
                cmd += ["--ro-bind", system_dir, system_dir]
        for python_dir in python_dirs():
            cmd += _parents(python_dir) + ["--ro-bind", str(python_dir), str(python_dir)]
        # Same path inside and out: the kernel's sockets are named in its connection file.
        cmd += _parents(self.ipc) + ["--bind", str(self.ipc), str(self.ipc)]
        for staged in sorted(self.staged.rglob("*")) if self.staged.exists() else []:
            if staged.is_file():
                cmd += ["--ro-bind", str(staged), f"{HOME}/{staged.relative_to(self.staged)}"]
        for relative, host in sorted((self.data or {}).items()):
            target = Path(DATA) / relative
            cmd += _parents(target) + ["--ro-bind", str(host), str(target)]
        cmd += ["--chdir", HOME, "setpriv", f"--reuid={self.slot.uid}", f"--regid={self.slot.uid}",
                "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--", *inner]
        join = "".join(f'echo $$ > "{procs}" && ' for procs in self.cgroups.procs_files())
        return ["/bin/sh", "-c", join + 'exec "$@"', "sandbox", *cmd]

    def kill_all(self) -> None:
        self.cgroups.kill_all()

    def oom_kills(self) -> int:
        return self.cgroups.oom_kills()

    def peak_memory_mb(self) -> float:
        return self.cgroups.peak_memory_mb() + self._reserve_mb

    def cpu_seconds(self) -> float | None:
        return self.cgroups.cpu_seconds()


def _parents(path: Path) -> list[str]:
    """bwrap arguments making the folders above `path` (those that exist already stay as they are)."""
    cmd: list[str] = []
    for parent in reversed(path.parents[:-1]):
        cmd += ["--perms", "0755", "--dir", str(parent)]
    return cmd
