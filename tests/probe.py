"""Checks of hostile fixtures shared by every backend's tests: the probe notebook, and the bombs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from autograder.execution.bridge import Bridge
from autograder.execution.session import NotebookSession
from autograder.intake.notebook import parse_notebook
from autograder.sandbox.limits import Limits

PROBE = Path(__file__).resolve().parent / "fixtures" / "hw1" / "probe.ipynb"
FINDINGS = ("LEAKED", "NETWORK", "VISIBLE_ROOT", "UID", "ENV_KEYS", "WROTE_OUTSIDE")


def run_probe(sandbox: Any, limits: Limits) -> dict[str, Any]:
    """`sandbox` is an entered sandbox; returns the probe's findings by name."""
    parsed = parse_notebook(PROBE.name, PROBE.read_bytes())
    session = NotebookSession(sandbox, limits, parsed.code_cells)
    try:
        session.run()
        bridge = Bridge(session)
        return {name: bridge.resolve(name) for name in FINDINGS}
    finally:
        session.close()


def run_cell_json(sandbox: Any, limits: Limits, code: str) -> Any:
    """Run one cell in a fresh kernel of the entered `sandbox`; the JSON its last printed line
    holds. The kernel is gone after."""
    session = NotebookSession(sandbox, limits, [code])
    try:
        report = session.run()[0]
    finally:
        session.close()
    assert report.status == "ok", (report.error, report.traceback)
    text = "".join(o.get("text", "") for o in report.outputs if o.get("output_type") == "stream")
    return json.loads(text.strip().splitlines()[-1])


def assert_bombs_contained(record: dict[str, Any], memory_mb: int) -> None:
    """resource_bombs.ipynb: each bomb hits its limit and costs only its own cell."""
    memory, fork, threads, disk, flood = record["cells"][3:8]
    assert memory["status"] == "dead" and "memory limit" in memory["error"]
    assert fork["status"] == "error" and "Resource temporarily unavailable" in fork["error"]
    assert threads["status"] == "error" and "can't start new thread" in threads["error"]
    assert disk["status"] == "error" and "No space left" in disk["error"]
    # A flood is cut at 64x the output allowance, or (when the kernel buffers it faster than it can
    # be read) stopped by the memory limit: either way only that cell is lost.
    assert flood["status"] in ("flood", "dead"), flood
    assert sum(q["score"] for q in record["questions"]) == 26
    assert record["peak_memory_mb"] is not None and record["peak_memory_mb"] <= memory_mb + 1
