"""`autograder build`: reproducible student material, and nothing secret in it (checked by content)."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import pytest

from autograder.authoring.leaks import find_leaks
from autograder.authoring.master import read_secrets
from autograder.course import Course

ASSIGNMENTS = ["hw1_manual_mlp", "hw2_backprop", "hw3_losses"]


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_build_regenerates_the_committed_student_material_byte_for_byte(
    name: str, repo_course: Course, built_course: Course
) -> None:
    committed = _tree(repo_course.assignment(name).student_dir)
    rebuilt = _tree(built_course.assignment(name).student_dir)
    assert sorted(committed) == sorted(rebuilt)
    differing = [f for f in committed if committed[f] != rebuilt[f]]
    assert not differing, f"assignments/{name} is stale: run `autograder build {name}` ({differing})"


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_no_solution_line_or_hidden_test_reaches_students(name: str, built_course: Course) -> None:
    assignment = built_course.assignment(name)
    secrets = read_secrets(assignment.master)
    # The check has something to look for: a master with hidden tests and solutions.
    assert len(secrets.solution_lines) >= 10 and len(secrets.hidden_test_lines) >= 10
    assert find_leaks(assignment.master, [assignment.student_dir, assignment.student_zip]) == []


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_hidden_tests_exist_only_on_the_grader_side(name: str, built_course: Course) -> None:
    assignment = built_course.assignment(name)
    grader_tests = "".join(p.read_text() for p in sorted(assignment.tests_dir.glob("*.py")))
    assert "hidden=True" in grader_tests
    student = json.loads(assignment.student_notebook.read_text())
    public_tests = "".join(student["metadata"]["otter"]["tests"].values())
    assert "hidden=True" not in public_tests and "hidden=False" in public_tests


def test_leak_checker_finds_a_planted_solution_line_and_hidden_test(
    built_course: Course, tmp_path: Path
) -> None:
    assignment = built_course.assignment(ASSIGNMENTS[0])
    secrets = read_secrets(assignment.master)
    solution_line = sorted(secrets.secret_lines() & secrets.solution_lines)[0]
    hidden_line = sorted(secrets.secret_lines() & secrets.hidden_test_lines)[0]
    planted = json.loads(assignment.student_notebook.read_text())
    planted["cells"][-1]["source"] = "    " + solution_line
    (tmp_path / "student.ipynb").write_text(json.dumps(planted))
    (tmp_path / "helper.py").write_text(f"x = 1\n        {hidden_line}\n")
    leaks = find_leaks(assignment.master, [tmp_path])
    assert {leak.line for leak in leaks} == {solution_line, hidden_line}


def test_build_refuses_to_publish_a_leaking_master(tmp_path: Path) -> None:
    import shutil

    from autograder.authoring.build import build
    from autograder.course import CourseError
    from tests.conftest import REPO

    course = Course(tmp_path)
    shutil.copytree(REPO / "reference" / ASSIGNMENTS[2], tmp_path / "reference" / ASSIGNMENTS[2])
    master = course.assignment(ASSIGNMENTS[2]).master
    nb = json.loads(master.read_text())
    secrets = read_secrets(master)
    line = sorted(secrets.secret_lines() & secrets.solution_lines)[0]
    # An instructor pastes a solution line into a markdown hint: no marker, but still a leak.
    hint = {"cell_type": "markdown", "id": "planted-hint", "metadata": {}, "source": f"Hint:\n\n    {line}"}
    nb["cells"].insert(2, hint)
    master.write_text(json.dumps(nb))
    with pytest.raises(CourseError, match="secret line"):
        build(course.assignment(ASSIGNMENTS[2]), run_tests=False)
    assert not (tmp_path / "assignments").exists()


def test_student_zip_holds_exactly_the_student_folder(built_course: Course) -> None:
    import zipfile

    for assignment in built_course.assignments(ASSIGNMENTS):
        with zipfile.ZipFile(assignment.student_zip) as archive:
            zipped = {i.filename: archive.read(i) for i in archive.infolist()}
        assert zipped == _tree(assignment.student_dir)
        assert filecmp.cmp(assignment.student_notebook, assignment.student_dir / f"{assignment.name}.ipynb")
