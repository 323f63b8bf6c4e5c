"""The bundled sample submissions, graded for real through the engine: reference full, blank zero,
each mistake exactly the points of what it breaks."""

from __future__ import annotations

from typing import Any

import pytest

from autograder import notebooks
from autograder.authoring.samples import BLANK, REFERENCE, load_specs, sample_notebooks
from autograder.course import Course
from autograder.demo import expected_scores
from autograder.grading.batch import BatchOptions, grade_batch
from autograder.store import Store
from tests.conftest import REPO

ASSIGNMENTS = ["hw1_manual_mlp", "hw2_backprop", "hw3_losses"]
CASES = [(name, spec.name) for name in ASSIGNMENTS for spec in load_specs(Course(REPO).assignment(name))]


@pytest.fixture(scope="session")
def graded(built_course: Course, engine_pool: Any, tmp_path_factory: pytest.TempPathFactory,
           ) -> dict[tuple[str, str], dict[str, Any]]:
    """Every bundled sample graded once, through the same batch path TAs use."""
    out = tmp_path_factory.mktemp("samples")
    store = Store(out / "results.sqlite")
    results = {}
    for name in ASSIGNMENTS:
        assignment = built_course.assignment(name)
        specs = load_specs(assignment)
        paths = [assignment.submissions_dir / f"{spec.name}.ipynb" for spec in specs]
        outcome = grade_batch(assignment, paths, out / name, store, BatchOptions(progress=False), executor=engine_pool)
        for spec, record in zip(specs, outcome.records, strict=True):
            results[(name, spec.name)] = record
    return results


def test_every_assignment_bundles_reference_blank_and_two_mistakes() -> None:
    for name in ASSIGNMENTS:
        names = [s.name for s in load_specs(Course(REPO).assignment(name))]
        assert names[:2] == [REFERENCE, BLANK] and len(names) >= 4


@pytest.mark.parametrize(("assignment", "sample"), CASES)
def test_sample_gets_exactly_its_expected_grade(
    assignment: str, sample: str, graded: dict[tuple[str, str], dict[str, Any]]
) -> None:
    record = graded[(assignment, sample)]
    assert record["status"] == "graded", record["message"]
    spec = next(s for s in load_specs(Course(REPO).assignment(assignment)) if s.name == sample)
    want = expected_scores(spec, record)
    got = {q["name"]: q["score"] for q in record["questions"]}
    assert got == pytest.approx(want), f"{assignment}/{sample}"
    possible = sum(q["max_score"] for q in record["questions"])
    assert possible >= 20
    if isinstance(spec.scores, dict):
        assert sum(got.values()) < possible, "a mistake sample must lose points"
        assert set(spec.scores) <= set(got)


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_bundled_samples_match_the_master(assignment: str, built_course: Course) -> None:
    """The committed, executed samples hold exactly the code that the master and samples.toml give."""
    built = built_course.assignment(assignment)
    for name, nb in sample_notebooks(built).items():
        stored = notebooks.read(REPO / "reference" / assignment / "submissions" / f"{name}.ipynb")
        assert [c.source for c in stored.cells] == [c.source for c in nb.cells], name
        assert any(c.get("outputs") for c in stored.cells if c.cell_type == "code"), f"{name} was not executed"


def test_reports_follow_otter_and_gradescope_formats(graded: dict, tmp_path_factory: pytest.TempPathFactory,
                                                     built_course: Course) -> None:
    import csv
    import json

    from autograder.grading.batch import write_reports

    records = [r for (hw, _), r in graded.items() if hw == ASSIGNMENTS[0]]
    out = tmp_path_factory.mktemp("reports")
    write_reports(ASSIGNMENTS[0], records, out)
    rows = list(csv.reader((out / "final_grades.csv").open()))
    questions = sorted({q["name"] for q in records[0]["questions"]})
    assert rows[0] == ["file", *questions, "total_points_earned", "percent_correct", "grading_status"]
    assert rows[1][0] == "points-per-question" and rows[1][-1] == "--"
    assert float(rows[1][-3]) == sum(q["max_score"] for q in records[0]["questions"])
    assert [r[0] for r in rows[2:]] == sorted(r["submission"] for r in records)
    assert all(r[-1] == "Completed" for r in rows[2:])
    result = json.loads(next((out / "results").glob("reference*.json")).read_text())
    assert result["score"] == float(rows[1][-3]) and {t["name"] for t in result["tests"]} == set(questions)
    assert (out / "score_distribution.png").read_bytes()[:4] == b"\x89PNG"
    feedback = (out / "feedback").glob("*.html")
    assert all("<table>" in page.read_text() for page in feedback)


def test_feedback_never_shows_hidden_test_code_or_values(graded: dict, built_course: Course) -> None:
    """Hidden checks' source lines and the np.testing value dumps stay out of what students read."""
    from autograder.authoring.master import read_secrets
    from autograder.reports.feedback import feedback_markdown

    for (name, sample), record in graded.items():
        text = feedback_markdown(record)
        hidden = read_secrets(built_course.assignment(name).master).hidden_test_lines
        leaked = [line for line in text.splitlines() if len(line.strip()) > 20 and line.strip() in hidden]
        assert not leaked, (name, sample, leaked)
        for question in record["questions"]:
            for case in question["cases"]:
                if case["hidden"]:
                    assert "DESIRED" not in case["message"] and " y: array" not in case["message"], case

