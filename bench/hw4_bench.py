"""hw4 grading cost, measured in one run: the whole grading of the reference (run 1 with the checks
and the model export, the decoy run, the grader's own evaluation) over one bare
`jupyter nbconvert --execute` of the same notebook (goal <= 2.2x), and the reference's accuracy
and training time as the grader measured them.

    uv run python bench/hw4_bench.py [--data DIR]      # DIR holds MNIST/raw/ (default: the course's)

It builds hw4 itself, in a temporary copy of the course.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from autograder.authoring.build import build
from autograder.course import Course
from autograder.grading.job import GradingJob, grade_job
from autograder.grading.material import Material
from autograder.sandbox.limits import Limits


def bare(notebook: Path, student_dir: Path, data: Path, threads: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "work"
        shutil.copytree(student_dir, work)
        shutil.copy(notebook, work / "submission.ipynb")
        env = os.environ | {"AUTOGRADER_DATA": str(data), "OMP_NUM_THREADS": str(threads),
                            "MKL_NUM_THREADS": str(threads)}
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
                        "--ExecutePreprocessor.timeout=900", "--output", "executed.ipynb", "submission.ipynb"],
                       cwd=work, env=env, check=True, capture_output=True)
        return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", help="folder holding MNIST/raw/")
    args = parser.parse_args()
    checkout = Course.locate()
    raw = checkout.mnist_raw_dir(args.data)
    work = Path(tempfile.mkdtemp(prefix="hw4-bench-"))
    shutil.copytree(checkout.root / "reference", work / "reference")  # built here: the checkout is not touched
    course = Course(work)
    assignment = course.assignment("hw4_mnist")
    build(assignment, run_tests=False)
    material = Material.load(assignment)
    limits = Limits(**material.settings.get("limits", {}))
    notebook = assignment.submissions_dir / "reference.ipynb"

    bare_seconds = bare(notebook, assignment.student_dir, raw.parent.parent, limits.threads)
    job = GradingJob(assignment.name, notebook.name, notebook.name, notebook.read_bytes(), material.tests,
                     material.home_files, limits.to_dict(), material.version(limits.to_dict()),
                     integrity=material.integrity, data_dir=str(raw))
    started = time.monotonic()
    record = grade_job(job)
    graded_seconds = time.monotonic() - started
    integrity = record["integrity"]
    print(f"reference: measured {100 * integrity['measured_accuracy']:.2f} % on the real test split, "
          f"notebook {integrity['notebook_seconds']:.1f} s in the sandbox ({limits.threads} threads), "
          f"flags {integrity['flags'] or 'none'}, {integrity['runs']} runs")
    print(f"bare nbconvert --execute {bare_seconds:.1f} s; whole grading {graded_seconds:.1f} s; "
          f"ratio {graded_seconds / bare_seconds:.2f} (goal <= 2.2)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
