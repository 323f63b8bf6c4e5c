"""The `autograder` command: a thin layer over the modules that do the work."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from autograder.course import Assignment, Course, CourseError

if TYPE_CHECKING:
    from autograder.grading.workers import KernelTemplates


def _course(args: argparse.Namespace) -> Course:
    return Course.locate(args.course)


def cmd_build(args: argparse.Namespace) -> int:
    from autograder.authoring.build import build

    course = _course(args)
    for assignment in course.assignments(args.assignments):
        result = build(assignment, run_tests=not args.no_run_tests)
        print(f"{assignment.name}: {len(result.student_files)} student file(s) in "
              f"assignments/{assignment.name}/, {len(result.test_files)} test file(s) in "
              f"dist/{assignment.name}/")
    return 0


def cmd_samples(args: argparse.Namespace) -> int:
    from autograder.authoring.samples import make_samples

    course = _course(args)
    for assignment in course.assignments(args.assignments):
        data = course.data_dir(args.data) if _needs_data(assignment) else None
        for path in make_samples(assignment, data, timeout=args.cell_timeout):
            print(path.relative_to(course.root))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from autograder.demo import run_demo

    return run_demo(_course(args), jobs=args.jobs, data=Path(args.data) if args.data else None)


def _overrides(args: argparse.Namespace) -> dict:
    """Limits given on the command line; the rest come from the assignment's grading.toml."""
    given = {"timeout": args.timeout, "cell_timeout": args.cell_timeout, "memory_mb": args.memory}
    return {key: value for key, value in given.items() if value}


def cmd_grade(args: argparse.Namespace) -> int:
    from autograder.grading.workers import start_workers, warm_modules

    course = _course(args)
    assignment = course.assignment(args.assignment)
    # The first worker starts (and imports) while this process imports the rest and reads the class.
    tests = {p.name: p.read_text(encoding="utf-8") for p in sorted(assignment.tests_dir.glob("*.py"))}
    started = start_workers(args.jobs, warm_modules(tests), _templates(args, assignment))
    try:
        return _grade(args, course, assignment, started)
    finally:
        started[0].shutdown(cancel_futures=True)


def _templates(args: argparse.Namespace, assignment: Assignment) -> KernelTemplates | None:
    """The kernel templates the first worker starts ahead (local sandbox only): the assignment's
    thread setting, and a second template where hw4's reruns need one."""
    from autograder.grading.material import grading_settings
    from autograder.grading.workers import KernelTemplates
    from autograder.sandbox.limits import Limits

    if args.backend != "local":
        return None
    try:
        settings = grading_settings(assignment)
        threads = Limits(**settings.get("limits", {})).threads
    except (CourseError, OSError, TypeError):
        return None  # grade_batch reports what is wrong with the material
    return KernelTemplates(threads, reruns="integrity" in settings)


def _grade(args: argparse.Namespace, course: Course, assignment: Assignment, started: tuple) -> int:
    from pathlib import Path

    from autograder.grading.batch import BatchOptions, grade_batch
    from autograder.sandbox.local import sandbox_problem
    from autograder.store import Store

    backend = _backend(args)
    problem = sandbox_problem() if backend is None else None
    if problem:
        raise CourseError(f"cannot grade without the sandbox: {problem}")
    out = Path(args.out)
    store = Store(Path(args.db) if args.db else out / "results.sqlite")
    data = course.mnist_raw_dir(args.data) if _needs_data(assignment) else None
    options = BatchOptions(overrides=_overrides(args), jobs=args.jobs, regrade=args.regrade, data_dir=data,
                           backend=backend)
    outcome = grade_batch(assignment, [Path(p) for p in args.submissions], out, store, options, warm_pool=started)
    ungraded = outcome.ungraded
    print(f"{assignment.name}: {len(outcome.records)} submission(s): {outcome.graded} graded now, "
          f"{outcome.cached} from the store, {len(ungraded)} could not be graded; {outcome.seconds:.1f} s")
    for record in ungraded:
        print(f"  {record['submission']}: {record['message']}")
    print(f"grades: {out / 'final_grades.csv'}; feedback: {out / 'feedback'}/; summary: {out / 'summary.md'}")
    return 1 if ungraded else 0


def _backend(args: argparse.Namespace) -> dict | None:
    """None for the local sandbox; for containers, the engine that answers and an image that exists."""
    if args.backend == "local":
        return None
    from autograder.sandbox.container_setup import EngineUnavailable, find_engine, image_exists, image_tag

    try:
        engine = find_engine(args.engine)
    except EngineUnavailable as error:
        raise CourseError(str(error)) from error
    image = args.image or image_tag()
    if not image_exists(engine, image):
        raise CourseError(f"no image {image} in {engine}: build it with "
                          f"`python -m autograder.sandbox.container_setup --engine {engine}` (or pass --image)")
    return {"engine": engine, "image": image}


def _needs_data(assignment: Assignment) -> bool:
    from autograder.grading.material import Material

    return Material.load(assignment).integrity is not None


def cmd_validate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from autograder.grading.job import GradingJob, grade_job
    from autograder.grading.material import Material
    from autograder.reports.feedback import feedback_markdown
    from autograder.sandbox.local import sandbox_problem

    assignment = _course(args).assignment(args.assignment)
    material = Material.load(assignment)
    notebook = Path(args.notebook)
    from autograder.sandbox.limits import Limits

    limits = Limits(**(material.settings.get("limits", {}) | _overrides(args)))
    sandboxed = sandbox_problem() is None
    if not sandboxed:
        print("note: running without the grader's sandbox (needs root and bubblewrap); results are the same, "
              "limits other than time are not enforced", file=sys.stderr)
    try:
        data = notebook.read_bytes()
        error = None
    except OSError as exc:
        data, error = b"", f"{notebook}: cannot be read ({exc.strerror})"
    from autograder.grading.preflight import preflight

    preflight(None, sandboxed, limits)
    job = GradingJob(assignment.name, notebook.name, notebook.name, data, material.tests, material.home_files,
                     limits.to_dict(), material.version(limits.to_dict()), include_hidden=False,
                     read_error=error, sandboxed=sandboxed)
    record = grade_job(job)
    print(feedback_markdown(record).replace("feedback for", "what the grader sees in"))
    print("Only public checks ran: the grade also counts hidden checks on fresh inputs.")
    return 0 if record["status"] == "graded" else 1


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from pathlib import Path

    from autograder.grading.batch import publish_leaderboard
    from autograder.grading.material import Material
    from autograder.reports.escape import visible
    from autograder.store import Store

    assignment = _course(args).assignment(args.assignment)
    material = Material.load(assignment)
    if material.integrity is None:
        raise CourseError(f"{assignment.name} has no leaderboard (no [integrity] in its grading.toml)")
    out = Path(args.out)
    db = Path(args.db) if args.db else out / "results.sqlite"
    if not db.is_file():
        raise CourseError(f"no result store at {db}: grade first (autograder grade ... --out {out}) or pass --db")
    board = publish_leaderboard(assignment.name, material, Store(db), out, top_k=args.top,
                                pseudonyms=args.pseudonyms, accept=args.accept, reject=args.reject)
    for entry in board.ranked:
        print(f"{entry.rank:>3}. {visible(entry.shown_as):<40} {100 * (entry.accuracy or 0):6.2f} %  "
              f"{entry.parameters or 0:>9,} params  bonus {entry.bonus:g}")
    flagged = [e for e in board.entries if e.rank is None]
    print("\n".join(board.summary()))
    print(f"{len(board.ranked)} ranked, {len(flagged)} not ranked ({len(board.under_review)} under review); "
          f"{out / 'leaderboard.md'}, decisions in {out / 'review.json'}")
    return 0


def cmd_setup(args: argparse.Namespace) -> int:
    from autograder.setup import ensure_system_packages

    return ensure_system_packages()


def cmd_data(args: argparse.Namespace) -> int:
    raw = _course(args).mnist_raw_dir(args.data)
    print(f"MNIST found in {raw}")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="autograder", description=__doc__)
    top.add_argument("--course", help="course folder (default: $AUTOGRADER_COURSE or this checkout)")
    commands = top.add_subparsers(dest="command", required=True)

    p = commands.add_parser("build", help="master notebooks -> assignments/ (students) and dist/")
    p.add_argument("assignments", nargs="*", metavar="HW", help="default: every assignment")
    p.add_argument("--no-run-tests", action="store_true",
                   help="skip running the master's tests against its solution")
    p.set_defaults(func=cmd_build)

    p = commands.add_parser("samples", help="(instructors) regenerate the executed sample submissions")
    p.add_argument("assignments", nargs="*", metavar="HW")
    p.add_argument("--data", help="folder holding MNIST/raw/ (default: $AUTOGRADER_DATA, then ../shared/data)")
    p.add_argument("--cell-timeout", type=int, default=600, help="a cell running longer is interrupted")
    p.set_defaults(func=cmd_samples)

    p = commands.add_parser("demo", help="build everything, grade the sample submissions, print grades")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--data", help="folder holding MNIST/raw/ for hw4 (default: a small generated set)")
    p.set_defaults(func=cmd_demo)

    def limit_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--timeout", type=float, help="seconds for the whole notebook (default 900)")
        p.add_argument("--cell-timeout", type=float, help="seconds for one cell or checked call (default 300)")
        p.add_argument("--memory", type=int, help="memory limit in MB (default 3072)")
        p.add_argument("--data", help="folder holding MNIST/raw/ (default: $AUTOGRADER_DATA, then ../shared/data)")

    p = commands.add_parser("grade", help="grade a class: notebooks, folders of them, or class zips")
    p.add_argument("assignment", metavar="HW")
    p.add_argument("submissions", nargs="+", metavar="SUBMISSION")
    p.add_argument("--out", required=True, help="folder for final_grades.csv, results/, feedback/, summary")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="submissions at once (default: cores)")
    p.add_argument("--db", help="result store (SQLite; default OUT/results.sqlite)")
    p.add_argument("--regrade", action="store_true", help="grade again even what the store already has")
    p.add_argument("--backend", choices=("local", "docker"), default="local",
                   help="where kernels run: the local sandbox (bubblewrap) or containers (docker or podman)")
    p.add_argument("--engine", choices=("docker", "podman"), help="with --backend docker: default a running "
                   "docker daemon, else podman")
    p.add_argument("--image", help="with --backend docker: the grading image (default: the one "
                   "`python -m autograder.sandbox.container_setup` builds for this checkout)")
    limit_options(p)
    p.set_defaults(func=cmd_grade)

    p = commands.add_parser("validate", help="(students) run a notebook as the grader will, public checks only")
    p.add_argument("assignment", metavar="HW")
    p.add_argument("notebook", metavar="NOTEBOOK")
    limit_options(p)
    p.set_defaults(func=cmd_validate)

    p = commands.add_parser("leaderboard", help="rank a trained-model assignment from the result store")
    p.add_argument("assignment", metavar="HW")
    p.add_argument("--out", required=True, help="folder for leaderboard.{csv,md,html,png} and final_grades.csv")
    p.add_argument("--db", help="result store (default OUT/results.sqlite)")
    p.add_argument("--top", type=int, help="how many get the bonus (default: grading.toml, else 3)")
    p.add_argument("--pseudonyms", action="store_true", help="show stable pseudonyms instead of names")
    p.add_argument("--accept", action="append", default=[], metavar="NAME",
                   help="a submission under review is not a copy: rank it (repeatable; kept in OUT/review.json)")
    p.add_argument("--reject", action="append", default=[], metavar="NAME",
                   help="a submission is a copy: never rank it (repeatable; kept in OUT/review.json)")
    p.set_defaults(func=cmd_leaderboard)

    p = commands.add_parser("setup", help="install and check what the sandbox needs (bubblewrap, cgroups)")
    p.set_defaults(func=cmd_setup)

    p = commands.add_parser("data", help="check that the MNIST files are where the settings say")
    p.add_argument("--data", help="data folder holding MNIST/raw/ (default: $AUTOGRADER_DATA)")
    p.set_defaults(func=cmd_data)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except CourseError as error:
        print(f"autograder: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
