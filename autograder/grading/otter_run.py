"""Grading one notebook with `otter run` against the built autograder zip.

Stop-gap grader: Otter runs the hidden tests inside the student's kernel (see the README's trust
model); the isolated engine replaces this without changing GradeResult.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from autograder.authoring.build import otter_executable
from autograder.course import Assignment
from autograder.grading.results import GradeResult, QuestionScore


def grade_with_otter(notebook: Path, assignment: Assignment, timeout: float = 600) -> GradeResult:
    started = time.monotonic()
    result = GradeResult(assignment.name, notebook.name)
    with tempfile.TemporaryDirectory(prefix="otter-run-") as tmp:
        work = Path(tmp)
        submission = work / f"{assignment.name}.ipynb"
        shutil.copyfile(notebook, submission)
        out = work / "out"
        out.mkdir()
        command = [
            otter_executable(), "run", str(submission), "-a", str(assignment.autograder_zip),
            "-o", str(out), "--no-logo",
        ]
        try:
            done = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            result.error = f"grading took longer than {timeout:.0f} s"
            return result
        results_file = out / "results.json"
        if not results_file.is_file():
            tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
            result.error = f"otter run wrote no results (exit {done.returncode}): " + " | ".join(tail)
            return result
        for test in json.loads(results_file.read_text())["tests"]:
            if test.get("max_score") is not None:
                result.questions.append(
                    QuestionScore(test["name"], float(test["score"]), float(test["max_score"]))
                )
    result.seconds = time.monotonic() - started
    return result
