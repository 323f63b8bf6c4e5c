"""A sandbox that cannot start stops the batch before anyone is graded: one message with the
sandbox's own words, a non-zero exit, nothing stored, no grade sheet (never a class of zeros)."""

from __future__ import annotations

from pathlib import Path

import pytest

from autograder import cli
from autograder.course import Course
from autograder.grading import preflight
from autograder.sandbox.local import LocalSandbox, sandbox_problem
from autograder.store import Store

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(sandbox_problem() is not None, reason=f"no local sandbox: {sandbox_problem()}")]

# What the sandbox printed when its own /tmp hid an environment under /tmp (the bug this guards).
BROKEN = "setpriv: failed to execute /tmp/clone/.venv/bin/python: No such file or directory"


def test_a_working_sandbox_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preflight, "_PASSED", set())
    from autograder.sandbox.limits import Limits

    preflight.preflight(None, True, Limits())


def test_a_broken_sandbox_stops_grade_before_anything_is_graded(
        built_course: Course, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(preflight, "_PASSED", set())
    monkeypatch.setattr(LocalSandbox, "wrap", lambda self, argv: ["/bin/sh", "-c", f"echo '{BROKEN}' >&2; exit 127"])
    assignment = built_course.assignment("hw1_manual_mlp")
    out, db = tmp_path / "out", tmp_path / "results.sqlite"
    code = cli.main(["--course", str(built_course.root), "grade", assignment.name,
                     str(assignment.submissions_dir), "--out", str(out), "--db", str(db)])
    said = capsys.readouterr().err
    assert code != 0
    assert "nothing was graded" in said and BROKEN in said and "autograder setup" in said
    assert not (out / "final_grades.csv").exists()
    assert Store(db).records(assignment.name) == []


def test_a_batch_of_one_checks_the_sandbox_with_its_own_kernel(
        built_course: Course, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One submission: no canary kernel of its own; the submission's first kernel start is the
    check, and a broken sandbox still stops the batch with the same message, nothing stored."""
    from concurrent.futures import ThreadPoolExecutor

    from autograder.grading.batch import BatchOptions, grade_batch

    assignment = built_course.assignment("hw1_manual_mlp")
    notebook = assignment.submissions_dir / "reference.ipynb"
    started: list[bool] = []
    real_start = preflight.start_as_canary
    monkeypatch.setattr(preflight, "_PASSED", set())
    monkeypatch.setattr(preflight, "check_sandbox", lambda *a: pytest.fail("a canary kernel of its own"))
    monkeypatch.setattr("autograder.grading.job.start_as_canary",
                        lambda *a: (started.append(True), real_start(*a))[1])
    with ThreadPoolExecutor(1) as pool:  # in this process: the broken wrap below reaches the job
        outcome = grade_batch(assignment, [notebook], tmp_path / "ok", Store(tmp_path / "ok.sqlite"),
                              BatchOptions(progress=False), executor=pool)
    assert started == [True] and outcome.records[0]["status"] == "graded"

    monkeypatch.setattr(LocalSandbox, "wrap", lambda self, argv: ["/bin/sh", "-c", f"echo '{BROKEN}' >&2; exit 127"])
    store = Store(tmp_path / "results.sqlite")
    with ThreadPoolExecutor(1) as pool, pytest.raises(preflight.SandboxFault) as fault:
        grade_batch(assignment, [notebook], tmp_path / "out", store, BatchOptions(progress=False), executor=pool)
    assert "nothing was graded" in str(fault.value) and BROKEN in str(fault.value)
    assert not (tmp_path / "out" / "final_grades.csv").exists()
    assert store.records(assignment.name) == []
