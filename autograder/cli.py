"""The `autograder` command: a thin layer over the modules that do the work."""

from __future__ import annotations

import argparse
import os
import sys

from autograder.course import Course, CourseError


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
        for path in make_samples(assignment):
            print(path.relative_to(course.root))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from autograder.demo import run_demo

    return run_demo(_course(args), jobs=args.jobs)


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
    p.set_defaults(func=cmd_samples)

    p = commands.add_parser("demo", help="build everything, grade the sample submissions, print grades")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    p.set_defaults(func=cmd_demo)

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
