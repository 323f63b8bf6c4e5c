"""`autograder setup`: the system pieces the sandbox needs, installed where we can, checked always."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from autograder.sandbox.local import sandbox_problem


def _apt_install(package: str) -> bool:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return False
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
        if subprocess.run(command, env=env, stdout=subprocess.DEVNULL).returncode != 0:
            return False
    return True


def ensure_system_packages() -> int:
    if shutil.which("bwrap") is None:
        print("setup: installing bubblewrap (the sandbox's namespaces) ...", file=sys.stderr)
        _apt_install("bubblewrap")
    problem = sandbox_problem()
    if problem:
        print(f"setup: grading sandbox unavailable: {problem}. Students can still run `autograder validate`.")
        return 1
    print("setup: grading sandbox ready (bubblewrap, cgroup memory and pids limits, unprivileged uids)")
    return 0
