"""A submission's notebook run top to bottom in a sandboxed kernel, surviving its own bad cells.

A cell that hangs is interrupted; one that still does not stop, kills the kernel, exhausts memory
or floods output loses the kernel. Otter then zeroes the whole notebook; here a fresh kernel replays
the cells that had worked and the run goes on after the bad cell, so a slow or broken cell costs
only what depends on it. Everything is bounded by the whole-notebook time limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from autograder.execution.kernel import CellRun, KernelDied, SandboxedKernel
from autograder.sandbox.limits import Limits

MAX_RESTARTS = 12  # each costs a replay of the good cells; all of it stays within the time budget


@dataclass
class CellReport:
    index: int  # position among the notebook's code cells
    status: str  # ok | error | timeout | budget | dead | flood | skipped
    seconds: float
    error: str | None = None
    traceback: str | None = None
    outputs: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self, with_outputs: bool = False) -> dict[str, Any]:
        data = {"index": self.index, "status": self.status, "seconds": round(self.seconds, 3),
                "error": self.error}
        if with_outputs:
            data["outputs"] = self.outputs
        return data


class NotebookSession:
    def __init__(self, sandbox: Any, limits: Limits, code_cells: list[str], cpu_stop: float | None = None,
                 first_start: Callable[[SandboxedKernel], None] | None = None) -> None:
        """`cpu_stop`: the kernel's CPU seconds past which the running cell is stopped (once: the
        cells after it run as usual), for a budget whose verdict is already decided by then.
        `first_start`: starts the kernel the first time instead of `SandboxedKernel.start` (the
        grader's canary check of the sandbox)."""
        self.sandbox = sandbox
        self.limits = limits
        self.cells = code_cells
        self.cpu_stop = cpu_stop
        self.first_start = first_start
        self.kernel = SandboxedKernel(sandbox, limits)
        self.reports: list[CellReport] = []
        self.restarts = 0
        self.started = 0.0
        self.memory_kills = 0

    def _remaining(self) -> float:
        """Time left for running the notebook's own cells."""
        return self.limits.timeout - (time.monotonic() - self.started)

    def _remaining_for_revival(self) -> float:
        """Checks run after the notebook; a kernel they lose may be rebuilt until twice the limit."""
        return 2 * self.limits.timeout - (time.monotonic() - self.started)

    def run(self) -> list[CellReport]:
        self.started = time.monotonic()
        (self.first_start or SandboxedKernel.start)(self.kernel)
        for index, source in enumerate(self.cells):
            remaining = self._remaining()
            if remaining <= 0:
                self.reports.append(CellReport(index, "skipped", 0.0,
                                               f"not run: the notebook used its {self.limits.timeout:g} s"))
                continue
            oom_before = self.sandbox.oom_kills()
            run = self.kernel.execute(source, min(self.limits.cell_timeout, remaining), cpu_limit=self.cpu_stop)
            if run.status == "budget":
                self.cpu_stop = None
            report = self._report(index, run, remaining)
            if self.sandbox.oom_kills() > oom_before:
                self.memory_kills += 1
                report.status = "dead"
                report.error = f"the cell used more than the {self.limits.memory_mb} MB memory limit"
            self.reports.append(report)
            if run.kernel_lost or report.status == "dead":
                self.revive()
        return self.reports

    def _report(self, index: int, run: CellRun, allowed: float) -> CellReport:
        error = run.error
        if run.status == "timeout":
            limit = min(self.limits.cell_timeout, allowed)
            error = f"the cell ran longer than {limit:g} s and was stopped ({run.error})"
        elif run.status == "budget":
            error = f"the notebook used more than its budget of CPU time and the cell was stopped ({run.error})"
        return CellReport(index, run.status, run.seconds, error, run.traceback, run.outputs)

    def revive(self) -> bool:
        """A live kernel holding everything the good cells defined, if the time and restarts allow."""
        if self.kernel.alive():
            return True
        if self.restarts >= MAX_RESTARTS or self._remaining_for_revival() <= 0:
            return False
        self.restarts += 1
        self.kernel.shutdown()
        try:
            self.kernel.start()
        except KernelDied:
            return False
        for report in self.reports:
            if report.status not in ("ok", "error"):
                continue
            remaining = self._remaining_for_revival()
            if remaining <= 0:
                return False
            replay = self.kernel.execute(self.cells[report.index], min(self.limits.cell_timeout, remaining))
            if replay.kernel_lost:
                return False
        return True

    def close(self) -> None:
        self.kernel.shutdown()
