"""Grading works wherever the checkout and its environment are: under /tmp, under a path with spaces.

The sandbox mounts a tmpfs of its own on /tmp; a Python environment under /tmp must still be there
inside (a clone under /tmp used to grade every notebook 0: "setpriv: failed to execute
.../.venv/bin/python: No such file or directory"). The grader here really runs from an environment
under such a path: this checkout's environment, hard-linked (seconds, no copy) into a folder whose
name has spaces, its interpreter the one the kernel runs with, its site-packages the kernel's,
the autograder package this checkout's (the environment's editable install points here).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from autograder.sandbox.local import sandbox_problem

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(sandbox_problem() is not None, reason=f"no local sandbox: {sandbox_problem()}"),
    pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="the tests run outside a virtual environment"),
]

REPO = Path(__file__).resolve().parents[1]

GRADER = r"""
import json, sys
import autograder
from autograder.execution.session import NotebookSession
from autograder.sandbox.limits import Limits
from autograder.sandbox.local import LocalSandbox, python_dirs

limits = Limits(timeout=300, cell_timeout=120, memory_mb=1024, pids=64)
cells = ["import sys, numpy\nprint(sys.executable, numpy.__file__, sep='\\n')"]
with LocalSandbox(limits) as sandbox:
    session = NotebookSession(sandbox, limits, cells)
    try:
        report = session.run()[0]
    finally:
        session.close()
print(json.dumps({"prefix": sys.prefix, "autograder": autograder.__file__, "dirs": [str(d) for d in python_dirs()],
                  "status": report.status, "error": report.error,
                  "output": "".join(o.get("text", "") for o in report.outputs)}))
"""


def _environment_under(parent: Path) -> Iterator[Path]:
    """This checkout's environment, hard-linked under `parent`/<a name with spaces>/venv."""
    folder = Path(tempfile.mkdtemp(prefix="autograder any location ", dir=parent))
    venv = folder / "venv"
    try:
        done = subprocess.run(["cp", "-al", sys.prefix, str(venv)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot hard-link the environment under {parent}: {done.stderr.strip()}")
        yield venv
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(params=[tempfile.gettempdir(), "/var/tmp"], ids=["tmp", "var-tmp"])
def moved_environment(request: pytest.FixtureRequest) -> Iterator[Path]:
    if not Path(request.param).is_dir():
        pytest.skip(f"no {request.param}")
    yield from _environment_under(Path(request.param))


def test_a_kernel_runs_with_an_environment_under_tmp_and_spaces(moved_environment: Path) -> None:
    python = moved_environment / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    done = subprocess.run([str(python), "-c", GRADER], capture_output=True, text=True, timeout=300,
                          env=env, cwd="/")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["prefix"] == str(moved_environment)
    assert Path(result["autograder"]).is_relative_to(REPO)  # the code under test, not an old copy
    assert str(moved_environment) in result["dirs"]
    assert result["status"] == "ok", result
    executable, numpy = result["output"].strip().splitlines()[-2:]
    assert executable == str(python)
    assert Path(numpy).is_relative_to(moved_environment)
