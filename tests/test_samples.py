"""The bundled sample submissions, graded for real: reference full, blank zero, mistakes exact."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from autograder.authoring.samples import BLANK, REFERENCE, SampleSpec, load_specs, sample_notebooks
from autograder.course import Course
from autograder.grading.otter_run import grade_with_otter
from autograder.grading.results import GradeResult
from tests.conftest import REPO

ASSIGNMENTS = ["hw1_manual_mlp", "hw2_backprop", "hw3_losses"]
CASES = [
    (name, spec.name) for name in ASSIGNMENTS for spec in load_specs(Course(REPO).assignment(name))
]


@pytest.fixture(scope="session")
def graded(built_course: Course) -> dict[tuple[str, str], GradeResult]:
    """Every bundled sample graded once (two at a time: each is a kernel)."""

    def grade(case: tuple[str, str]) -> GradeResult:
        assignment = built_course.assignment(case[0])
        return grade_with_otter(REPO / "reference" / case[0] / "submissions" / f"{case[1]}.ipynb", assignment)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(CASES, pool.map(grade, CASES), strict=True))


def _spec(assignment: str, sample: str) -> SampleSpec:
    return next(s for s in load_specs(Course(REPO).assignment(assignment)) if s.name == sample)


def test_every_assignment_bundles_reference_blank_and_two_mistakes() -> None:
    for name in ASSIGNMENTS:
        names = [s.name for s in load_specs(Course(REPO).assignment(name))]
        assert names[:2] == [REFERENCE, BLANK] and len(names) >= 4


@pytest.mark.parametrize(("assignment", "sample"), CASES)
def test_sample_gets_exactly_its_expected_grade(
    assignment: str, sample: str, graded: dict[tuple[str, str], GradeResult]
) -> None:
    result = graded[(assignment, sample)]
    assert result.error is None, result.error
    assert result.possible >= 15
    spec = _spec(assignment, sample)
    for question in result.questions:
        if spec.scores == "zero":
            expected = 0.0
        elif spec.scores and question.name in spec.scores:
            expected = spec.scores[question.name]
        else:
            expected = question.max_score
        assert question.score == pytest.approx(expected), (
            f"{assignment}/{sample}: {question.name} scored {question.score}, expected {expected}"
        )
    if spec.scores not in (None, "zero"):
        assert result.total < result.possible, "a mistake sample must lose points"
        assert set(spec.scores) <= {q.name for q in result.questions}


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_bundled_samples_match_the_master(assignment: str, built_course: Course) -> None:
    """The committed, executed samples hold exactly the code that the master and samples.toml give."""
    fresh = sample_notebooks(built_course.assignment(assignment))
    for name, nb in fresh.items():
        bundled = built_course.assignment(assignment).submissions_dir / f"{name}.ipynb"
        from autograder import notebooks

        stored = notebooks.read(REPO / bundled.relative_to(built_course.root))
        assert [c.source for c in stored.cells] == [c.source for c in nb.cells], name
        assert any(c.get("outputs") for c in stored.cells if c.cell_type == "code"), "not executed"
