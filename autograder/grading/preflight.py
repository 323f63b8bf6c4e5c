"""Before a batch grades anyone: one canary kernel in the chosen sandbox, running one trivial cell.

A sandbox that cannot start (a missing interpreter inside it, a mount that hides the environment,
no user namespaces, a container engine that refuses to run) would otherwise fail every submission
with the same message and be recorded as a class of zeros. That is the grader's fault: the batch
stops here, before anything is graded or stored, with the sandbox's own words and what to do.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from autograder.course import CourseError
from autograder.execution.kernel import KernelDied, SandboxedKernel
from autograder.sandbox.factory import sandbox_factory
from autograder.sandbox.limits import Limits

CANARY_CELL = "print(6 * 7)"
START_TIMEOUT = 120.0  # seconds: a cold start of the sandbox and the interpreter, generously


class SandboxFault(CourseError):
    """The sandbox itself does not work here: no submission can be graded."""


def check_sandbox(sandbox: Any, limits: Limits) -> None:
    """`sandbox` is an entered sandbox; raise SandboxFault unless a kernel starts and runs a cell."""
    _check_program(sandbox)
    kernel = SandboxedKernel(sandbox, limits)
    try:
        start_as_canary(sandbox, kernel)
    finally:
        kernel.shutdown()


def start_as_canary(sandbox: Any, kernel: SandboxedKernel) -> None:
    """Start `kernel` and run the canary cell in it (not in its history), or raise SandboxFault with
    what the sandbox said. A batch of one submission does this with the submission's own kernel,
    before its first cell: the canary then costs no kernel of its own."""
    try:
        kernel.start(timeout=START_TIMEOUT)
    except KernelDied as error:
        _check_program(sandbox)  # the sandbox's own words, when even a plain program fails in it
        raise SandboxFault(_advice(f"a kernel did not start inside the sandbox ({error})")) from None
    run = kernel.execute(CANARY_CELL, timeout=START_TIMEOUT, store_history=False)
    printed = "".join(out.get("text", "") for out in run.outputs if out.get("output_type") == "stream")
    if run.status != "ok" or printed.strip() != "42":
        raise SandboxFault(_advice(f"a kernel in the sandbox could not run a trivial cell ({run.status}: "
                                   f"{run.error or printed.strip()[:200]})"))


def _check_program(sandbox: Any) -> None:
    command = sandbox.wrap([sys.executable, "-c", CANARY_CELL])
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=START_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise SandboxFault(_advice(f"the sandbox's command could not run: {error}")) from None
    if done.returncode != 0 or done.stdout.strip() != "42":
        said = (done.stderr.strip() or done.stdout.strip() or f"exit status {done.returncode}")[-1500:]
        raise SandboxFault(_advice(f"a trivial program failed inside the sandbox: {said}"))


def _advice(cause: str) -> str:
    return (f"the grading sandbox does not work on this machine, so nothing was graded: {cause}. "
            "Run `autograder setup` (as root) and try again; `--backend docker` grades in containers instead.")


_PASSED: set[str] = set()  # sandbox settings already checked by this process


def preflight(backend: dict[str, Any] | None, sandboxed: bool, limits: Limits) -> None:
    """Check the sandbox a batch with these settings would use (once per process and settings)."""
    key = json.dumps([backend, sandboxed, limits.to_dict()], sort_keys=True)
    if key in _PASSED:
        return
    try:
        with sandbox_factory(backend, sandboxed)(limits, {}, None) as sandbox:
            # A fresh kernel: one canary is cheaper than starting a kernel template in this process,
            # and a template's kernel that fails to start is replaced by a fresh one anyway.
            sandbox.use_template = False
            check_sandbox(sandbox, limits)
    except SandboxFault:
        raise
    except Exception as error:  # noqa: BLE001 - whatever stops the sandbox, it stops every submission
        raise SandboxFault(_advice(f"the sandbox could not be set up ({type(error).__name__}: {error})")) from None
    _PASSED.add(key)
