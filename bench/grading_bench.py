"""Grading speed, measured in one run on this machine (ratios, not absolute targets).

    uv run python bench/grading_bench.py [--class-size 50]

1. Per submission: the grader's whole job for one notebook (sandbox, kernel, notebook, hidden checks
   through the bridge) over a bare `jupyter nbconvert --execute` of the same notebook (goal <= 1.3x).
2. Throughput: a class graded with 2 jobs over 1 job (goal >= 1.7x on 2 cores).
3. Re-running an unchanged class of 50 (goal < 5 s): everything comes from the store.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from autograder.course import Course
from autograder.grading.batch import BatchOptions, default_executor, grade_batch
from autograder.grading.job import GradingJob, grade_job
from autograder.grading.material import Material
from autograder.sandbox.limits import Limits
from autograder.store import Store

ASSIGNMENTS = ["hw1_manual_mlp", "hw2_backprop", "hw3_losses"]


def bare_execution(notebook: Path, student_dir: Path) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "work"
        shutil.copytree(student_dir, work)
        shutil.copy(notebook, work / "submission.ipynb")
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
                        "--ExecutePreprocessor.timeout=600", "--output", "executed.ipynb", "submission.ipynb"],
                       cwd=work, check=True, capture_output=True)
        return time.monotonic() - started


def graded_once(notebook: Path, material: Material) -> float:
    limits = Limits().to_dict()
    job = GradingJob(material.assignment, notebook.name, notebook.name, notebook.read_bytes(), material.tests,
                     material.home_files, limits, material.version(limits))
    started = time.monotonic()
    record = grade_job(job)
    assert record["status"] == "graded", record["message"]
    return time.monotonic() - started


def distinct_copies(notebook: Path, folder: Path, count: int) -> list[Path]:
    """`count` different submissions (each with its own comment cell) of one notebook."""
    folder.mkdir(parents=True, exist_ok=True)
    nb = nbformat.read(str(notebook), as_version=4)
    paths = []
    for index in range(count):
        copy = nbformat.from_dict(nb)
        cell = nbformat.v4.new_code_cell(f"# student {index}")
        cell.id = f"bench-{index}"
        copy.cells = [*nb.cells, cell]
        path = folder / f"student_{index:03d}.ipynb"
        nbformat.write(copy, str(path))
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--class-size", type=int, default=50)
    parser.add_argument("--throughput-size", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    course = Course.locate()

    print("1. one submission: grader job / bare nbconvert --execute (median of "
          f"{args.repeats}, the reference solution)")
    for name in ASSIGNMENTS:
        assignment = course.assignment(name)
        material = Material.load(assignment)
        notebook = assignment.submissions_dir / "reference.ipynb"
        bare = [bare_execution(notebook, assignment.student_dir) for _ in range(args.repeats)]
        graded = [graded_once(notebook, material) for _ in range(args.repeats)]
        print(f"   {name:<16} bare {statistics.median(bare):5.2f} s   graded {statistics.median(graded):5.2f} s"
              f"   ratio {statistics.median(graded) / statistics.median(bare):.2f}")

    assignment = course.assignment("hw3_losses")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        students = distinct_copies(assignment.submissions_dir / "reference.ipynb", root / "class",
                                   args.throughput_size)
        seconds = {}
        for jobs in (1, 2):
            pool = default_executor(jobs)
            pool.submit(sum, [1]).result()  # workers started before the clock
            started = time.monotonic()
            grade_batch(assignment, students, root / f"out{jobs}", Store(root / f"db{jobs}.sqlite"),
                        BatchOptions(jobs=jobs, progress=False), executor=pool)
            seconds[jobs] = time.monotonic() - started
            pool.shutdown()
        print(f"2. throughput, {args.throughput_size} hw3 submissions: 1 job {seconds[1]:.1f} s, "
              f"2 jobs {seconds[2]:.1f} s, speed-up {seconds[1] / seconds[2]:.2f}x")

        big = distinct_copies(assignment.submissions_dir / "reference.ipynb", root / "big", args.class_size)
        store = Store(root / "big.sqlite")
        first_started = time.monotonic()
        grade_batch(assignment, [root / "big"], root / "big-out", store, BatchOptions(jobs=2, progress=False))
        first = time.monotonic() - first_started
        started = time.monotonic()
        again = grade_batch(assignment, [root / "big"], root / "big-out", store, BatchOptions(jobs=2, progress=False))
        rerun = time.monotonic() - started
        assert again.cached == len(big)
        print(f"3. class of {args.class_size}: first grading {first:.1f} s, unchanged re-run {rerun:.2f} s "
              f"({again.cached} from the store)")


if __name__ == "__main__":
    main()
