"""The batch as a TA runs it: the command line, resuming after SIGKILL, sharing a store, order and
parallelism not changing any grade, re-runs costing nothing, and the student's `validate`."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from autograder.course import Course
from autograder.grading.batch import BatchOptions, grade_batch
from autograder.store import Store

HW = "hw3_losses"


def _grades(out: Path) -> list[str]:
    return (out / "final_grades.csv").read_text().splitlines()


def _distinct(folder: Path) -> int:
    return len({p.read_bytes() for p in folder.glob("*.ipynb")})


def _cli(course: Course, *args: str) -> list[str]:
    return [sys.executable, "-m", "autograder", "--course", str(course.root), *args]


@pytest.fixture(scope="module")
def class_folder(built_course: Course, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight students: the hw3 samples, one of them submitted twice under another name."""
    folder = tmp_path_factory.mktemp("class") / "hw3"
    shutil.copytree(built_course.assignment(HW).submissions_dir, folder)
    shutil.copy(folder / "reference.ipynb", folder / "copy of reference.ipynb")
    return folder


def test_grade_command_then_sigkill_then_resume_loses_and_duplicates_nothing(
    built_course: Course, class_folder: Path, tmp_path: Path
) -> None:
    out, db = tmp_path / "out", tmp_path / "store.sqlite"
    command = _cli(built_course, "grade", HW, str(class_folder), "--out", str(out), "--db", str(db), "--jobs", "1")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 300
    stored = 0
    while time.monotonic() < deadline and stored < 2:
        time.sleep(0.5)
        if db.exists():
            with sqlite3.connect(db) as conn:
                stored = conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert 2 <= stored < 9, "the kill should land mid-batch"

    done = subprocess.run([*command[:-1], "2"], capture_output=True, text=True, timeout=600)  # resumed with 2 jobs
    assert done.returncode == 0, done.stdout + done.stderr
    assert "from the store" in done.stdout
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT assignment, sha256, grader_version FROM results").fetchall()
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert len(rows) == len(set(rows)) == _distinct(class_folder)  # the copy shares its content hash
    grades = _grades(out)
    assert len(grades) == 1 + 1 + 10 and all(line.endswith("Completed") for line in grades[2:])


def test_two_grade_processes_share_one_store(built_course: Course, class_folder: Path, tmp_path: Path) -> None:
    db = tmp_path / "shared.sqlite"
    files = sorted(class_folder.glob("*.ipynb"))
    halves = [files[::2], files[1::2]]
    processes = [
        subprocess.Popen(_cli(built_course, "grade", HW, *map(str, half), "--out", str(tmp_path / f"out{i}"),
                              "--db", str(db), "--jobs", "1"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for i, half in enumerate(halves)
    ]
    for process in processes:
        assert process.wait(timeout=600) == 0, process.stderr.read().decode()[-2000:]
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        count = conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    assert count == _distinct(class_folder)


@pytest.fixture(scope="module")
def graded_with_two_jobs(built_course: Course, class_folder: Path, engine_pool: Any,
                         tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The class graded once, two jobs at a time, into a store of its own."""
    work = tmp_path_factory.mktemp("two-jobs")
    store = Store(work / "db.sqlite")
    outcome = grade_batch(built_course.assignment(HW), sorted(class_folder.glob("*.ipynb")), work / "out", store,
                          BatchOptions(progress=False, jobs=2), executor=engine_pool)
    return {"outcome": outcome, "store": store, "out": work / "out"}


def test_order_and_jobs_do_not_change_any_grade(built_course: Course, class_folder: Path,
                                                graded_with_two_jobs: dict[str, Any], tmp_path: Path) -> None:
    files = sorted(class_folder.glob("*.ipynb"), reverse=True)  # the other order, one job at a time
    one = grade_batch(built_course.assignment(HW), files, tmp_path / "one", Store(tmp_path / "a.sqlite"),
                      BatchOptions(jobs=1, progress=False))
    assert _grades(tmp_path / "one") == _grades(graded_with_two_jobs["out"])
    assert {r["submission"] for r in one.records} == {r["submission"] for r in graded_with_two_jobs["outcome"].records}


def test_rerun_of_an_unchanged_class_grades_nothing(built_course: Course, class_folder: Path, engine_pool: Any,
                                                    graded_with_two_jobs: dict[str, Any], tmp_path: Path) -> None:
    assignment = built_course.assignment(HW)
    first, store = graded_with_two_jobs["outcome"], graded_with_two_jobs["store"]
    again = grade_batch(assignment, [class_folder], tmp_path / "out", store, BatchOptions(progress=False),
                        executor=engine_pool)
    assert (first.graded, first.cached) == (10, 0)
    assert (again.graded, again.cached) == (0, 10)
    forced = grade_batch(assignment, [class_folder / "blank.ipynb"], tmp_path / "out2", store,
                         BatchOptions(progress=False, regrade=True), executor=engine_pool)
    assert forced.graded == 1


def test_validate_shows_public_checks_only(built_course: Course) -> None:
    notebook = built_course.assignment(HW).submissions_dir / "missing_mean.ipynb"
    done = subprocess.run(_cli(built_course, "validate", HW, str(notebook)), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "public check `test_cross_entropy_lecture`" in done.stdout
    assert "- hidden check" not in done.stdout
    assert "Only public checks ran" in done.stdout
