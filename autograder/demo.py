"""`autograder demo`: build every assignment, grade the bundled sample submissions, print the grades."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from autograder.authoring.build import build
from autograder.authoring.samples import SampleSpec, load_specs
from autograder.course import Assignment, Course
from autograder.grading.otter_run import grade_with_otter
from autograder.grading.results import GradeResult


def expected_total(spec: SampleSpec, graded: GradeResult) -> float:
    if spec.scores is None:
        return graded.possible
    if spec.scores == "zero":
        return 0.0
    lost = sum(graded.possible_of(q) - s for q, s in spec.scores.items())
    return graded.possible - lost


def _row(spec: SampleSpec, graded: GradeResult) -> str:
    if graded.error:
        return f"  {spec.name:<24} ERROR {graded.error}"
    expected = expected_total(spec, graded)
    flag = "" if abs(expected - graded.total) < 1e-9 else f"   <-- expected {expected:g}"
    per_question = " ".join(f"{q.name}:{q.score:g}" for q in graded.questions)
    return (f"  {spec.name:<24} {graded.total:>5g}/{graded.possible:<4g} {graded.seconds:5.1f}s  "
            f"{per_question}{flag}")


def run_demo(course: Course, jobs: int = 2) -> int:
    started = time.monotonic()
    assignments = course.assignments()
    for assignment in assignments:
        t0 = time.monotonic()
        build(assignment, run_tests=False)
        print(f"built {assignment.name} in {time.monotonic() - t0:.1f}s "
              f"-> {assignment.student_dir.relative_to(course.root)}/, "
              f"{assignment.dist_dir.relative_to(course.root)}/")
    jobs_list: list[tuple[Assignment, SampleSpec, Path]] = [
        (a, spec, a.submissions_dir / f"{spec.name}.ipynb")
        for a in assignments for spec in load_specs(a)
    ]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        grades = list(pool.map(lambda job: grade_with_otter(job[2], job[0]), jobs_list))
    mismatches = 0
    current = None
    for (assignment, spec, _), graded in zip(jobs_list, grades, strict=True):
        if assignment.name != current:
            current = assignment.name
            print(f"\n{assignment.name}")
        print(_row(spec, graded))
        mismatches += bool(graded.error) or abs(expected_total(spec, graded) - graded.total) > 1e-9
    print(f"\ngraded {len(grades)} sample submissions in {time.monotonic() - started:.1f}s; "
          f"{mismatches} differ from their expected grade")
    return 1 if mismatches else 0
