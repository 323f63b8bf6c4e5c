"""`autograder build`: master notebook -> student material (committed) + grader material (dist/).

Otter's `otter assign` does the splitting; this module makes its output reproducible (stable cell ids,
fixed names, zips without timestamps) and refuses to publish anything that leaks a secret line.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from autograder import notebooks
from autograder.authoring.gradescope_zip import write_gradescope_zip
from autograder.authoring.leaks import find_leaks
from autograder.course import Assignment, CourseError

ZIP_DATE = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class BuildResult:
    assignment: str
    student_files: list[str]
    test_files: list[str]


def otter_executable() -> str:
    candidate = Path(sys.executable).with_name("otter")
    return str(candidate) if candidate.exists() else "otter"


def write_zip(zip_path: Path, files: dict[str, bytes]) -> None:
    """A zip whose bytes depend only on its content (sorted names, fixed dates)."""
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, files[name])


def run_otter_assign(master: Path, out: Path, run_tests: bool) -> None:
    command = [otter_executable(), "assign", str(master), str(out)]
    if not run_tests:
        command.append("--no-run-tests")
    done = subprocess.run(command, cwd=out.parent, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        log = (done.stdout + done.stderr).strip().splitlines()
        raise CourseError(
            f"otter assign failed on {master} (exit {done.returncode}); fix the master and build "
            "again. Last lines:\n  " + "\n  ".join(log[-15:])
        )


def build(assignment: Assignment, run_tests: bool = True) -> BuildResult:
    """Build one assignment into assignments/<hw>/ and dist/<hw>/, replacing what was there."""
    if not assignment.master.is_file():
        raise CourseError(f"master notebook missing: {assignment.master}")
    with tempfile.TemporaryDirectory(prefix=f"build-{assignment.name}-") as tmp:
        out = Path(tmp) / "out"
        run_otter_assign(assignment.master, out, run_tests)
        produced_student = out / "student"
        produced_grader = out / "autograder"

        student_nb = notebooks.canonicalise(
            notebooks.read(produced_student / f"{assignment.name}.ipynb"), assignment.name
        )
        grader_nb = notebooks.canonicalise(
            notebooks.read(produced_grader / f"{assignment.name}.ipynb"), assignment.name
        )
        [otter_zip] = produced_grader.glob("*.zip")

        staged_student = Path(tmp) / "student"
        notebooks.write(student_nb, staged_student / assignment.student_notebook.name)
        for extra in produced_student.rglob("*"):
            relative = extra.relative_to(produced_student)
            if extra.is_file() and relative.name != assignment.student_notebook.name:
                (staged_student / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(extra, staged_student / relative)

        student_files = {
            str(p.relative_to(staged_student)): p.read_bytes()
            for p in sorted(staged_student.rglob("*"))
            if p.is_file()
        }
        staged_zip = Path(tmp) / "student.zip"
        write_zip(staged_zip, student_files)
        leaks = find_leaks(assignment.master, [staged_student, staged_zip])
        if leaks:
            raise CourseError(
                f"refusing to publish {assignment.name}: {len(leaks)} secret line(s) would reach "
                "students; mark them as solution or hidden test in the master. First: "
                + "; ".join(map(str, leaks[:3]))
            )

        with zipfile.ZipFile(otter_zip) as archive:
            grader_zip_files = {
                info.filename: archive.read(info) for info in archive.infolist() if not info.is_dir()
            }

        shutil.rmtree(assignment.student_dir, ignore_errors=True)
        shutil.copytree(staged_student, assignment.student_dir)
        shutil.rmtree(assignment.dist_dir, ignore_errors=True)
        notebooks.write(grader_nb, assignment.autograder_notebook)
        write_zip(assignment.autograder_zip, grader_zip_files)
        write_zip(assignment.student_zip, student_files)
        if assignment.grading_settings_source.is_file():
            shutil.copyfile(assignment.grading_settings_source, assignment.grading_settings)
        test_files = sorted(name for name in grader_zip_files if name.startswith("tests/"))
        for name in test_files:
            target = assignment.dist_dir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(grader_zip_files[name])
    write_gradescope_zip(assignment)  # after dist/: it packs the tests, student files and settings
    return BuildResult(assignment.name, sorted(student_files), test_files)
