"""Memory and process limits through a cgroup of the sandbox's own (v1 or v2 hierarchy).

A cgroup limit holds for the whole process tree, counts what the kernel really charges (unlike
RLIMIT_AS, which a CUDA build of torch exceeds on import), and tells us afterwards whether the
memory limit was hit.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


class CgroupSet:
    """A sandbox's cgroup(s): `attach(pid)` before exec, `kill_all()` and `remove()` afterwards."""

    def __init__(self, name: str, memory_mb: int, pids: int) -> None:
        self.dirs: dict[str, Path] = {}
        self.v2 = (ROOT / "cgroup.controllers").is_file()
        limit = str(memory_mb * 1024 * 1024)
        if self.v2:
            path = ROOT / "autograder" / name
            path.mkdir(parents=True)
            (path / "memory.max").write_text(limit)
            (path / "memory.swap.max").write_text("0") if (path / "memory.swap.max").exists() else None
            (path / "pids.max").write_text(str(pids))
            self.dirs["unified"] = path
        else:
            memory = ROOT / "memory" / "autograder" / name
            memory.mkdir(parents=True)
            (memory / "memory.limit_in_bytes").write_text(limit)
            self.dirs["memory"] = memory
            pid_dir = ROOT / "pids" / "autograder" / name
            pid_dir.mkdir(parents=True)
            (pid_dir / "pids.max").write_text(str(pids))
            self.dirs["pids"] = pid_dir
            if (ROOT / "cpuacct").is_dir():  # accounting only: what the budget of hw4 counts
                cpu_dir = ROOT / "cpuacct" / "autograder" / name
                cpu_dir.mkdir(parents=True)
                self.dirs["cpuacct"] = cpu_dir

    def set_limits(self, memory_mb: int, pids: int) -> None:
        """New limits, before anything runs in it (a template's kernel: see LocalSandbox.started)."""
        limit = str(memory_mb * 1024 * 1024)
        if self.v2:
            (self.dirs["unified"] / "memory.max").write_text(limit)
            (self.dirs["unified"] / "pids.max").write_text(str(pids))
        else:
            (self.dirs["memory"] / "memory.limit_in_bytes").write_text(limit)
            (self.dirs["pids"] / "pids.max").write_text(str(pids))

    @staticmethod
    def usable() -> bool:
        if (ROOT / "cgroup.controllers").is_file():
            controllers = (ROOT / "cgroup.controllers").read_text().split()
            return {"memory", "pids"} <= set(controllers) and os.access(ROOT, os.W_OK)
        return os.access(ROOT / "memory", os.W_OK) and os.access(ROOT / "pids", os.W_OK)

    def procs_files(self) -> list[Path]:
        """Writing a pid into each of these moves that process (and its future children) in."""
        return [path / "cgroup.procs" for path in self.dirs.values()]

    def pids(self) -> set[int]:
        found: set[int] = set()
        for path in self.dirs.values():
            try:
                found.update(int(p) for p in (path / "cgroup.procs").read_text().split())
            except OSError:
                pass
        return found

    def kill_all(self) -> None:
        for _ in range(50):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.02)

    def oom_kills(self) -> int:
        """How many processes the kernel killed for exceeding the memory limit so far."""
        name = "memory.events" if self.v2 else "memory.oom_control"
        fields = (self.dirs["unified" if self.v2 else "memory"] / name).read_text().split()
        counts = dict(zip(fields[::2], fields[1::2], strict=True))
        return int(counts.get("oom_kill", 0))

    def cpu_seconds(self) -> float | None:
        """CPU time used so far by everything that ran in the sandbox, threads and children too."""
        try:
            if self.v2:
                fields = (self.dirs["unified"] / "cpu.stat").read_text().split()
                return int(dict(zip(fields[::2], fields[1::2], strict=True))["usage_usec"]) / 1e6
            if "cpuacct" in self.dirs:
                return int((self.dirs["cpuacct"] / "cpuacct.usage").read_text()) / 1e9
        except (OSError, KeyError, ValueError):
            pass
        return None

    def peak_memory_mb(self) -> float:
        name = "memory.peak" if self.v2 else "memory.max_usage_in_bytes"
        path = self.dirs["unified" if self.v2 else "memory"] / name
        try:
            return int(path.read_text()) / 1024 / 1024
        except (OSError, ValueError):
            return float("nan")

    def remove(self) -> None:
        self.kill_all()
        for path in self.dirs.values():
            for _ in range(50):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)


def confine_this_process(name: str, memory_mb: int) -> bool:
    """Move the calling process into a memory cgroup of its own, left again at exit: a grading
    worker, so that whatever a kernel makes it hold (zmq buffers every frame of a multipart message
    before the worker can look at it) costs only that worker. False where no cgroup is writable."""
    import atexit

    if not CgroupSet.usable():
        return False
    limit = str(memory_mb * 1024 * 1024)
    if (ROOT / "cgroup.controllers").is_file():
        path, home = ROOT / "autograder" / name, ROOT
        path.mkdir(parents=True, exist_ok=True)
        (path / "memory.max").write_text(limit)
    else:
        path, home = ROOT / "memory" / "autograder" / name, ROOT / "memory"
        path.mkdir(parents=True, exist_ok=True)
        (path / "memory.limit_in_bytes").write_text(limit)
    (path / "cgroup.procs").write_text(str(os.getpid()))
    _remove_dead_workers(path.parent)

    def leave() -> None:
        try:
            (home / "cgroup.procs").write_text(str(os.getpid()))
            path.rmdir()
        except OSError:
            pass

    atexit.register(leave)
    return True


def _remove_dead_workers(folder: Path) -> None:
    """The cgroups of workers that were killed (SIGKILL runs no exit handler): empty, their pid gone."""
    for stale in folder.glob("worker-*"):
        pid = stale.name.removeprefix("worker-")
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            try:
                stale.rmdir()  # refused while any process is in it
            except OSError:
                pass
