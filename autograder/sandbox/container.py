"""The container sandbox: the student's kernel runs in the grading image under Docker or Podman.

The same interface as the local sandbox (LocalSandbox), so the kernel, the session and the bridge
do not know which wall they talk through. Only the kernel is in the container: the grader, the
checks, the hidden tests and the store stay on the host. The kernel's connection file and its ZMQ
ipc sockets live in a host folder bound into the container at the same path (Unix sockets work
across a bind mount, and need no network: the container has none).

Each kernel start is one container: `--network none`, memory (no swap), pids and CPU limits, a
read-only root, a private tmpfs home holding the public student files (read-only binds), a size-
limited /tmp, the data files read-only under /data, an unprivileged user (uid 1000), no
capabilities, tini as pid 1 (`--init`), and no log driver (output the kernel writes past Jupyter
is dropped, never stored). Containers are not started with `--rm` (through Podman 4.3's Docker
API that loses exit codes): `kill_all` and the context's exit remove them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from autograder.sandbox.limits import Limits
from autograder.sandbox.local import DATA, HOME, LocalSandbox, SandboxUnavailable

CONTAINER_UID = 1000
VENV = "/opt/venv"
DEFAULT_IMAGE = "autograder-grader:latest"
CLI_TIMEOUT = 60.0
CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass
class _Container:
    name: str
    cgroup: Path | None = None  # its memory cgroup on the host, once known
    v2: bool = False
    seen_ooms: int = 0  # OOM kills read from the cgroup while it ran
    cpu: Path | None = None  # the file of its CPU time on the host (v1 cpuacct.usage, v2 cpu.stat)
    cpu_seconds: float = 0.0  # its CPU time, as last read while it ran
    ooms: int | None = None  # final count, once it has stopped
    removed: bool = False


class ContainerSandbox:
    """One submission's container sandbox; `wrap(argv)` gives the engine command that runs argv inside."""

    def __init__(self, limits: Limits, home_files: dict[str, bytes] | None = None,
                 data: dict[str, Path] | None = None, engine: str | None = None, image: str | None = None,
                 kind: str = "container") -> None:
        if kind != "container":
            raise ValueError(f"unknown sandbox backend kind {kind!r}")
        self.limits = limits
        self.home_files = home_files or {}
        self.data = data
        self.engine = engine
        self.image = image or DEFAULT_IMAGE
        self.containers: list[_Container] = []
        self.peak = float("nan")
        self.finished_ooms = 0

    # -- lifetime -------------------------------------------------------------------------------

    def __enter__(self) -> ContainerSandbox:
        if self.engine is None:
            from autograder.sandbox.container_setup import EngineUnavailable, find_engine

            try:
                self.engine = find_engine()
            except EngineUnavailable as error:
                raise SandboxUnavailable(str(error)) from error
        elif shutil.which(self.engine) is None:
            raise SandboxUnavailable(f"the container engine {self.engine!r} is not installed")
        self.base = Path(tempfile.mkdtemp(prefix="autograder-container-"))
        self.ipc = self.base / "ipc"
        self.ipc.mkdir()
        if os.geteuid() == 0:
            os.chown(self.ipc, CONTAINER_UID, CONTAINER_UID)
        self.staged = self.base / "home"
        self.staged.mkdir()
        for relative, content in self.home_files.items():
            target = self.staged / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            os.chmod(target, 0o644)
        for folder in [self.staged, *(p for p in self.staged.rglob("*") if p.is_dir())]:
            os.chmod(folder, 0o755)
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill_all()
        self._remove([c for c in self.containers if not c.removed])  # those that stopped by themselves
        shutil.rmtree(self.base, ignore_errors=True)

    @property
    def uid(self) -> int:
        """The kernel's uid: the image's unprivileged user, or (not root) the caller's own."""
        return CONTAINER_UID if os.geteuid() == 0 else os.getuid()

    @property
    def ipc_dir(self) -> Path:
        return self.ipc

    def environment(self) -> dict[str, str]:
        """The local sandbox's variables (threads pinned, data location), with the image's Python."""
        env = LocalSandbox.environment(self)  # type: ignore[arg-type] - it reads limits and data only
        env["PATH"] = f"{VENV}/bin:/usr/local/bin:/usr/bin:/bin"
        return env

    # -- the command ----------------------------------------------------------------------------

    def wrap(self, argv: list[str]) -> list[str]:
        container = _Container(f"autograder-{uuid.uuid4().hex[:16]}")
        self.containers.append(container)
        memory = f"{self.limits.memory_mb}m"
        tmpfs = f"rw,exec,nosuid,nodev,size={self.limits.disk_mb}m"
        cmd = [self.engine, "run", "--name", container.name, "--pull", "never", "--init",
               "--network", "none", "--read-only", "--memory", memory, "--memory-swap", memory,
               "--pids-limit", str(self.limits.pids), "--cpus", str(self.limits.threads),
               "--user", f"{self.uid}:{self.uid}", "--cap-drop", "ALL",
               "--security-opt", "no-new-privileges", "--log-driver", "none", "--hostname", "sandbox",
               "--tmpfs", f"/tmp:{tmpfs}", "--tmpfs", f"{HOME}:{tmpfs},{self._home_owner()}",
               "--workdir", HOME,
               # Same path inside and out: the kernel's sockets are named in its connection file.
               "--mount", f"type=bind,source={self.ipc},target={self.ipc}"]
        for key, value in self.environment().items():
            cmd += ["--env", f"{key}={value}"]
        for staged in sorted(self.staged.rglob("*")):
            if staged.is_file():
                cmd += ["--mount", f"type=bind,source={staged},target={HOME}/{staged.relative_to(self.staged)},"
                                   "readonly"]
        for relative, host in sorted((self.data or {}).items()):
            cmd += ["--mount", f"type=bind,source={Path(host).resolve()},target={Path(DATA) / relative},readonly"]
        return [*cmd, self.image, f"{VENV}/bin/python", *argv[1:]]

    def _home_owner(self) -> str:
        """The kernel must own its home. Neither engine applies a tmpfs mode= here (runc 1.1); Docker
        passes uid=/gid= to the mount, Podman refuses them and chowns with U."""
        return "U" if self.engine == "podman" else f"uid={self.uid},gid={self.uid}"

    # -- what happened --------------------------------------------------------------------------

    def started(self, timeout: float, alive: Callable[[], bool]) -> None:
        """The kernel's command has started: nothing else to do (see LocalSandbox.started)."""

    def kernel_kept(self) -> bool:
        return True  # the kernel is the command's own process: nothing else keeps it

    def template_failed(self) -> bool:
        return False  # its kernels are never forked from a template

    def kill_all(self) -> None:
        """Stop and remove the running container(s), keeping what they tell about memory first."""
        live = [c for c in self.containers if c.ooms is None]
        for container in live:
            self._probe(container)
        running = [c for c in live if c.ooms is None]
        if running:
            self._remove(running)
            for container in running:
                container.ooms = container.seen_ooms

    def _remove(self, containers: list[_Container]) -> None:
        if not containers:
            return
        # Podman gives up on every name after one that does not exist (yet); --ignore goes on.
        ignore = ["--ignore"] if self.engine == "podman" else []
        self._cli("rm", "--force", *ignore, *(c.name for c in containers))
        for container in containers:
            container.removed = True

    def oom_kills(self) -> int:
        """Processes killed for exceeding the memory limit, over every container of this sandbox."""
        total = 0
        for container in self.containers:
            if container.ooms is None:
                self._probe(container)
            total += container.ooms if container.ooms is not None else container.seen_ooms
        return total

    def cpu_seconds(self) -> float | None:
        """CPU time of every container of this sandbox (all processes and threads in it), as read
        from their cgroups on the host; None if a running one's cannot be read (budgets then use the
        cells' wall-clock time)."""
        for container in self.containers:
            if container.ooms is None:
                self._probe(container)
                if container.ooms is None and container.cpu is None:
                    return None
        return sum(c.cpu_seconds for c in self.containers)

    def peak_memory_mb(self) -> float:
        return self.peak

    def _probe(self, container: _Container) -> None:
        """Read a running container's cgroup, or settle a stopped container's final state."""
        if container.cgroup is not None and self._read_cgroup(container):
            return
        state = self._inspect(container.name)
        if state is None:  # not created yet, or already removed
            return
        running, pid, oom_killed, exit_code = state
        if running and pid > 0:
            container.cgroup, container.v2 = _memory_cgroup(pid)
            container.cpu = _cpu_file(pid)
            if container.cgroup is not None:
                self._read_cgroup(container)
            return
        if running:
            return
        # Docker reports OOMKilled; Podman 4.3 does not (always false), but the exit code is 137.
        died_of_oom = oom_killed or (self.engine == "podman" and exit_code == 137)
        container.ooms = container.seen_ooms + (1 if died_of_oom else 0)
        if died_of_oom:
            self.peak = max(_nan_to(self.peak, 0.0), float(self.limits.memory_mb))

    def _read_cgroup(self, container: _Container) -> bool:
        path = container.cgroup
        with contextlib.suppress(OSError, ValueError):
            if container.cpu is not None:
                container.cpu_seconds = max(container.cpu_seconds, _read_cpu(container.cpu))
        try:
            if container.v2:
                fields = (path / "memory.events").read_text().split()
                peak_file = path / "memory.peak"
            else:
                fields = (path / "memory.oom_control").read_text().split()
                peak_file = path / "memory.max_usage_in_bytes"
            counts = dict(zip(fields[::2], fields[1::2], strict=False))
            container.seen_ooms = max(container.seen_ooms, int(counts.get("oom_kill", 0)))
            try:
                peak = int(peak_file.read_text()) / 1024 / 1024
                self.peak = max(_nan_to(self.peak, 0.0), peak)
            except (OSError, ValueError):
                pass
            return True
        except (OSError, ValueError):
            return False

    def _inspect(self, name: str) -> tuple[bool, int, bool, int] | None:
        done = self._cli("inspect", "--type", "container", "--format",
                         "{{.State.Running}} {{.State.Pid}} {{.State.OOMKilled}} {{.State.ExitCode}}", name)
        if done is None or done.returncode != 0:
            return None
        try:
            running, pid, oom, code = done.stdout.split()
            return running == "true", int(pid), oom == "true", int(code)
        except ValueError:
            return None

    def _cli(self, *args: str) -> subprocess.CompletedProcess | None:
        try:
            return subprocess.run([self.engine, *args], capture_output=True, text=True, timeout=CLI_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired):
            return None


def _nan_to(value: float, default: float) -> float:
    return default if value != value else value


def _cpu_file(pid: int) -> Path | None:
    """The host file of a process's cgroup CPU time: v1 `cpuacct` hierarchy, or v2 unified."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "cpuacct" in controllers.split(","):
            return CGROUP_ROOT / controllers / path.lstrip("/") / "cpuacct.usage"
    for line in lines:
        if line.startswith("0::"):
            return CGROUP_ROOT / line[3:].lstrip("/") / "cpu.stat"
    return None


def _read_cpu(path: Path) -> float:
    if path.name == "cpu.stat":
        fields = path.read_text().split()
        return int(dict(zip(fields[::2], fields[1::2], strict=False))["usage_usec"]) / 1e6
    return int(path.read_text()) / 1e9


def _memory_cgroup(pid: int) -> tuple[Path | None, bool]:
    """The host folder of a process's memory cgroup (v1 `memory` hierarchy, or v2 unified)."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None, False
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return CGROUP_ROOT / "memory" / path.lstrip("/"), False
    for line in lines:
        if line.startswith("0::"):
            return CGROUP_ROOT / line[3:].lstrip("/"), True
    return None, False
