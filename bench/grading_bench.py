"""Grading speed, measured in one run on this machine (ratios, not absolute targets). It builds
what it needs itself, in a temporary copy of the course (the checkout is not touched).

    uv run python bench/grading_bench.py [--repeats 3] [--throughput-size 12] [--class-size 50]

0. `autograder demo`, the README's first command after set-up, whole process (goal <= 90 s).
1. One hw3 submission, whole process: `autograder grade` over `otter run` on the same notebook and
   Otter autograder zip, run alternately (goal <= 1.0x).
2. Per submission: the grader's whole job for one notebook (sandbox, kernel, notebook, hidden checks
   through the bridge) over a bare `jupyter nbconvert --execute` of the same notebook (goal <= 1.3x).
3. Throughput: a class graded with 2 jobs over 1 job (goal >= 1.7x on 2 cores).
4. Re-running an unchanged class of 50 (goal < 5 s): everything comes from the store.
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
from autograder.grading.batch import BatchOptions, grade_batch
from autograder.grading.job import GradingJob, grade_job
from autograder.grading.material import Material
from autograder.grading.workers import default_executor
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


def whole_process(command: list[str], cwd: Path) -> float:
    started = time.monotonic()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{(done.stdout + done.stderr)[-3000:]}")
    return seconds


def single_submission(course: Course, root: Path, repeats: int) -> tuple[float, float, float]:
    """Medians of `autograder grade` and `otter run` on hw3's reference, and of their pair ratios."""
    assignment = course.assignment("hw3_losses")
    notebook = root / "hw3_losses.ipynb"
    shutil.copy(assignment.submissions_dir / "reference.ipynb", notebook)
    ours, otters = [], []
    for index in range(repeats + 1):  # the first pair warms the file cache and is not counted
        out = root / f"single-{index}"
        graded = whole_process([sys.executable, "-m", "autograder", "--course", str(course.root), "grade",
                                "hw3_losses", str(notebook), "--out", str(out / "ours")], root)
        (out / "otter").mkdir(parents=True)
        otter = whole_process([sys.executable, "-m", "otter", "run", "-a", str(assignment.autograder_zip),
                               "-o", str(out / "otter"), str(notebook)], root)
        if index:
            ours.append(graded)
            otters.append(otter)
    ratios = [a / b for a, b in zip(ours, otters, strict=True)]
    return statistics.median(ours), statistics.median(otters), statistics.median(ratios)


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
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copytree(Course.locate().root / "reference", root / "course" / "reference")
        course = Course(root / "course")
        started = time.monotonic()
        demo = whole_process([sys.executable, "-m", "autograder", "--course", str(course.root), "demo"], root)
        print(f"0. autograder demo (builds every assignment, grades every sample): {demo:.1f} s "
              f"(first run: build included; {time.monotonic() - started:.1f} s)")
        graded, otter, ratio = single_submission(course, root, args.repeats)
        print(f"1. one hw3 submission, whole process (median of {args.repeats}): autograder grade {graded:.2f} s, "
              f"otter run {otter:.2f} s, ratio {ratio:.2f} (pair by pair)")
        measure(course, root, args)


def measure(course: Course, root: Path, args: argparse.Namespace) -> None:
    print("2. one submission: grader job / bare nbconvert --execute (median of "
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
    print(f"3. throughput, {args.throughput_size} hw3 submissions: 1 job {seconds[1]:.1f} s, "
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
    print(f"4. class of {args.class_size}: first grading {first:.1f} s, unchanged re-run {rerun:.2f} s "
          f"({again.cached} from the store)")


if __name__ == "__main__":
    main()
