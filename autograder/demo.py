"""`autograder demo`: build every assignment, grade the bundled sample submissions through the
grading engine, and print each grade next to the grade the sample is meant to get."""

from __future__ import annotations

import sys
import time
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from autograder.authoring.build import build
from autograder.authoring.samples import SampleSpec, load_specs
from autograder.course import Assignment, Course
from autograder.grading.batch import BatchOptions, grade_batch
from autograder.grading.material import Material
from autograder.grading.workers import KernelTemplates, default_executor, warm_up
from autograder.integrity.synthetic import DEMO_INTEGRITY, DEMO_MNIST, SYNTHETIC_LIMITS, write_synthetic_mnist
from autograder.integrity.training import eligible
from autograder.reports.scores import fmt, possible, total
from autograder.store import Store


def expected_scores(spec: SampleSpec, record: dict[str, Any]) -> dict[str, float]:
    """Per question, what the sample must score: full marks unless the spec says otherwise."""
    expected = {}
    for question in record["questions"]:
        if spec.scores == "zero":
            expected[question["name"]] = 0.0
        elif isinstance(spec.scores, dict) and question["name"] in spec.scores:
            expected[question["name"]] = spec.scores[question["name"]]
        else:
            expected[question["name"]] = question["max_score"]
    return expected


def matches(spec: SampleSpec, record: dict[str, Any]) -> bool:
    if record["status"] != "graded":
        return False
    if spec.scores == "zero":
        return all(q["score"] == 0 for q in record["questions"])
    if spec.expect is not None or "integrity" in record:
        return verdict_matches(spec, record)
    want = expected_scores(spec, record)
    return all(abs(q["score"] - want[q["name"]]) < 1e-9 for q in record["questions"])


def verdict_matches(spec: SampleSpec, record: dict[str, Any]) -> bool:
    """Trained-model samples: the tests full, and exactly the expected integrity flags."""
    expect = spec.expect or {"eligible": True, "reasons": []}
    integrity = record.get("integrity") or {}
    tests_full = all(q["score"] == q["max_score"] for q in record["questions"]
                     if q["name"] not in ("accuracy", "reproducibility"))
    return (tests_full and set(integrity.get("flags", [])) == set(expect["reasons"])
            and eligible(integrity) == expect["eligible"])


def run_demo(course: Course, jobs: int = 2, out: Path | None = None, data: Path | None = None) -> int:
    """`data`: the folder holding MNIST/raw/ for hw4; without it, a small generated MNIST-like set
    (the real one trains each hw4 sample twice for up to a minute or more)."""
    started = time.monotonic()
    out = out or course.root / "demo-output"
    store = Store(out / "results.sqlite")
    # While the workers start and the first assignments grade, two threads build every assignment
    # (each an `otter assign` subprocess) and write the generated MNIST-like set, in that order.
    prepare = ThreadPoolExecutor(max_workers=2, thread_name_prefix="demo-prepare")
    built = {assignment.name: prepare.submit(build, assignment, run_tests=False)
             for assignment in course.assignments()}
    if data is None:
        # The folder is named after the set's settings: a demo-output/ of other settings is not reused.
        name = "synthetic-mnist-{n_train}-{n_test}-seed{seed}".format(**DEMO_MNIST)
        raw, overrides, integrity = out / name / "MNIST" / "raw", SYNTHETIC_LIMITS, DEMO_INTEGRITY
        written = prepare.submit(_write_demo_set, raw)
        print(f"hw4 runs on a small generated MNIST-like set ({DEMO_MNIST['n_train']} training, "
              f"{DEMO_MNIST['n_test']} test images) in {raw} (real MNIST: --data DIR)")
    else:
        raw, overrides, integrity = data / "MNIST" / "raw", {}, {}
        written = None  # the TA's own data: nothing to write
    mismatches = 0
    pool = default_executor(jobs)  # one pool for all assignments: workers start (and import torch) once
    # Their kernel templates start meanwhile (every demo kernel has one thread, hw4's on the
    # generated set too; hw4's reruns have a template of their own).
    templates = KernelTemplates(SYNTHETIC_LIMITS["threads"], reruns=True) if data is None else None
    for _ in range(jobs):
        pool.submit(warm_up, ("torch",), templates)
    try:
        mismatches = _grade_all(course, jobs, out, store, pool, raw, overrides, integrity, built, written)
    finally:
        pool.shutdown()
        prepare.shutdown(cancel_futures=True)
    print(f"\nReports (final_grades.csv, feedback, summary) in {out}/; "
          f"{time.monotonic() - started:.1f} s; {mismatches} sample(s) off their expected grade")
    return 1 if mismatches else 0


def _write_demo_set(raw: Path) -> None:
    if not (raw / "t10k-labels-idx1-ubyte").is_file():
        write_synthetic_mnist(raw, **DEMO_MNIST)


def _grade_all(course: Course, jobs: int, out: Path, store: Store, pool: Executor, raw: Path,
               overrides: dict[str, Any], integrity: dict[str, Any], built: dict[str, Future],
               written: Future | None) -> int:
    from tqdm import tqdm

    mismatches = 0
    total = sum(len(load_specs(assignment)) for assignment in course.assignments())
    bar = tqdm(total=total, desc="demo: grading the samples of every assignment", unit="nb", file=sys.stderr,
               dynamic_ncols=True)
    try:
        for assignment in course.assignments():
            built[assignment.name].result()
            mismatches += _grade_one(assignment, jobs, out, store, pool, raw, overrides, integrity, bar, written)
    finally:
        bar.close()
    return mismatches


def _grade_one(assignment: Assignment, jobs: int, out: Path, store: Store, pool: Executor, raw: Path,
               overrides: dict[str, Any], integrity: dict[str, Any], bar: Any, written: Future | None) -> int:
    mismatches = 0
    t0 = time.monotonic()
    specs = load_specs(assignment)
    paths = [assignment.submissions_dir / f"{spec.name}.ipynb" for spec in specs]
    trained = Material.load(assignment).integrity is not None
    if trained and written is not None:
        written.result()
    options = BatchOptions(jobs=jobs, progress=False, data_dir=raw if trained else None,
                           overrides=overrides if trained else {}, integrity_overrides=integrity,
                           on_graded=lambda: bar.update(1))
    outcome = grade_batch(assignment, paths, out / assignment.name, store, options, executor=pool)
    bar.update(outcome.cached)
    print(f"\n{assignment.name}: graded {len(paths)} samples in {time.monotonic() - t0:.1f} s "
          f"({outcome.cached} from the store)")
    for spec, record in zip(specs, outcome.records, strict=True):
        ok = matches(spec, record)
        mismatches += not ok
        per_question = " ".join(f"{q['name']}:{fmt(q['score'])}" for q in record["questions"])
        flag = "" if ok else "   <-- not the expected grade"
        verdict = ""
        if "integrity" in record:
            integrity = record["integrity"]
            accuracy = integrity.get("measured_accuracy")
            verdict = (f"  measured {100 * accuracy:.2f} %" if accuracy is not None else "") + (
                f"  flags: {', '.join(integrity['flags'])}" if integrity["flags"] else "  eligible")
        print(f"  {spec.name:<34} {fmt(total(record)):>5}/{fmt(possible(record)):<3} {per_question}{verdict}{flag}")
    if trained:
        print((out / assignment.name / "leaderboard.md").read_text().split("## Not ranked")[0])
    return mismatches
