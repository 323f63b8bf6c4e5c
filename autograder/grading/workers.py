"""The local pool of grading workers: how they start, what confines them, what they import first.

Light on purpose (no grading code imported here): a command can start its workers before it
imports the rest, so that their start-up overlaps its own.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass

# What one grading worker may hold: an honest hw3 job peaks near 0.6 GB (bench/wall_memory.py).
WORKER_MEMORY_MB = 6144


def _confine_worker(memory_mb: int) -> None:
    import atexit

    from autograder.sandbox.cgroups import confine_this_process

    # Registered first, so run last: after every other exit handler (leaving the cgroup among
    # them), skip the interpreter's teardown, which takes a second once torch is loaded. A worker
    # exits only when its pool shuts down, after its results were written (a synchronous pipe).
    atexit.register(os._exit, 0)
    confine_this_process(f"worker-{os.getpid()}", memory_mb)


def default_executor(jobs: int, worker_memory_mb: int = WORKER_MEMORY_MB) -> Executor:
    # spawn: workers start clean (no inherited threads or kernels), as they would on another machine.
    # Each worker is held to its own memory limit where cgroups allow: see confine_this_process.
    return ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_confine_worker, initargs=(worker_memory_mb,))


def start_workers(jobs: int, modules: tuple[str, ...], templates: KernelTemplates | None = None,
                  worker_memory_mb: int = WORKER_MEMORY_MB) -> tuple[Executor, Future]:
    """A pool whose first worker starts and warms up now (before the caller imports the grading
    code itself), and the future of that warm-up."""
    pool = default_executor(jobs, worker_memory_mb)
    return pool, pool.submit(warm_up, modules, templates)


def warm_modules(tests: dict[str, str]) -> tuple[str, ...]:
    """What the workers import ahead: torch, if the hidden tests use it."""
    return ("torch",) if any("torch" in source for source in tests.values()) else ()


@dataclass(frozen=True)
class KernelTemplates:
    """The kernel templates a worker starts ahead (local sandbox only): for kernels of `threads`
    threads, and with `reruns` the second one hw4's reruns take their kernels from."""
    threads: int
    reruns: bool = False


def warm_up(modules: tuple[str, ...], templates: KernelTemplates | None = None) -> None:
    """Run in a fresh worker first: start the kernel templates (their imports run in their own
    processes), import the grading code now, and `modules` (torch, for the hidden tests) in the
    background, while the first job's kernel runs its notebook."""
    if templates is not None:
        from autograder.sandbox.limits import Limits
        from autograder.sandbox.local import LocalSandbox, sandbox_problem
        from autograder.sandbox.template import template_for

        if sandbox_problem() is None:
            environment = LocalSandbox(Limits(threads=templates.threads)).template_environment()
            for variant in range(1 + templates.reruns):
                template_for(environment, variant)  # from this, the main thread: see KernelTemplate
    import autograder.grading.job  # noqa: F401 - imported for its cost, now rather than in a job

    import_in_background(modules)


def import_in_background(modules: tuple[str, ...]) -> None:
    """Import `modules` in a daemon thread: whoever imports one meanwhile waits for it (the import
    lock), everyone else goes on."""
    import importlib
    import threading

    def work() -> None:
        for module in modules:
            try:
                importlib.import_module(module)
            except ImportError:
                pass  # the import that needs it reports it

    threading.Thread(target=work, name="import-in-background", daemon=True).start()
