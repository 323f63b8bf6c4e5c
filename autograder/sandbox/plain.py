"""No wall at all: the notebook runs as the current user, in a private temporary home.

Only for `autograder validate` on a student's own machine (their own code, no hidden tests), where
the sandbox's root and bubblewrap requirements would be in the way. Grading never uses it.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from autograder.sandbox.limits import Limits


class PlainSandbox:
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
            (self.base / "data" / relative).parent.mkdir(parents=True, exist_ok=True)
            (self.base / "data" / relative).symlink_to(host)
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
        return ["/bin/sh", "-c", f'cd "{self.home}" && exec "$@"', "sandbox", "env", "-i", *settings, *argv]

    def kill_all(self) -> None:
        pass  # the kernel manager kills the kernel process itself

    def oom_kills(self) -> int:
        return 0

    def peak_memory_mb(self) -> float:
        return float("nan")
