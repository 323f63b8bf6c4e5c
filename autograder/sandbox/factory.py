"""Which sandbox a grading job gets, from its plain-data settings (they cross to any worker)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from autograder.sandbox.limits import Limits

UNPRIVILEGED = "unprivileged"  # backend kind: Gradescope's container, where bubblewrap cannot run


def sandbox_factory(backend: dict[str, Any] | None, sandboxed: bool) -> Callable[..., Any]:
    """What makes a job's sandbox: `factory(limits, home_files, data, rerun=False)`, entered with `with`.
    `backend`: None (the local sandbox, or with `sandboxed` false the plain one), a container
    engine's settings, or {"kind": "unprivileged"}."""
    if backend and backend.get("kind") == UNPRIVILEGED:
        from autograder.sandbox.unprivileged import UnprivilegedSandbox

        return lambda limits, home_files, data, rerun=False: UnprivilegedSandbox(limits, home_files, data)
    if backend:
        from autograder.sandbox.container import ContainerSandbox

        return lambda limits, home_files, data, rerun=False: ContainerSandbox(limits, home_files, data, **backend)
    if sandboxed:
        from autograder.sandbox.local import LocalSandbox

        return lambda limits, home_files, data, rerun=False: LocalSandbox(limits, home_files, data, rerun)
    from autograder.sandbox.plain import PlainSandbox

    return lambda limits, home_files, data, rerun=False: PlainSandbox(limits, home_files, data)


def make_sandbox(backend: dict[str, Any] | None, sandboxed: bool, limits: Limits, home_files: dict[str, bytes],
                 data: dict[str, Path] | None, rerun: bool = False) -> Any:
    """`rerun`: a run compared with the submission's first (hw4's reproducibility runs): where
    kernels are forked from templates (the local sandbox; the others ignore it), its kernel comes
    from another template than the first run's, so the two differ in everything two fresh
    interpreters differ in (the string-hash seed)."""
    return sandbox_factory(backend, sandboxed)(limits, home_files, data, rerun)
