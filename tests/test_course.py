from pathlib import Path

import pytest

from autograder.course import DATA_ENV, MNIST_FILES, Course, CourseError
from autograder.integrity.synthetic import write_synthetic_mnist


def test_assignments_are_discovered_from_the_masters(repo_course: Course) -> None:
    names = repo_course.assignment_names()
    assert names[:3] == ["hw1_manual_mlp", "hw2_backprop", "hw3_losses"]


def test_unknown_assignment_names_the_known_ones(repo_course: Course) -> None:
    with pytest.raises(CourseError, match="hw1_manual_mlp"):
        repo_course.assignment("hw9_nope")


def test_data_location_comes_from_option_then_environment(
    repo_course: Course, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(DATA_ENV, raising=False)
    assert repo_course.data_dir() == (repo_course.root.parent / "shared" / "data").resolve()
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "env"))
    assert repo_course.data_dir() == tmp_path / "env"
    assert repo_course.data_dir(tmp_path / "opt") == tmp_path / "opt"


def test_missing_mnist_names_the_setting_and_the_files(repo_course: Course, tmp_path: Path) -> None:
    with pytest.raises(CourseError) as error:
        repo_course.mnist_raw_dir(tmp_path)
    message = str(error.value)
    assert DATA_ENV in message and "--data" in message and MNIST_FILES[0] in message


def test_generated_idx_files_are_accepted(repo_course: Course, tmp_path: Path) -> None:
    write_synthetic_mnist(tmp_path / "MNIST" / "raw", n_train=60, n_test=20)
    assert repo_course.mnist_raw_dir(tmp_path) == (tmp_path / "MNIST" / "raw").resolve()


def test_course_is_found_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "reference").mkdir()
    monkeypatch.setenv("AUTOGRADER_COURSE", str(tmp_path))
    assert Course.locate().root == tmp_path.resolve()
    monkeypatch.setenv("AUTOGRADER_COURSE", str(tmp_path / "missing"))
    with pytest.raises(CourseError, match="AUTOGRADER_COURSE"):
        Course.locate()
