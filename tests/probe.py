"""Running tests/fixtures/hw1/probe.ipynb in a sandbox and reading what it found, for any backend."""

from __future__ import annotations

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
