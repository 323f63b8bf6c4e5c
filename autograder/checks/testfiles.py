"""Otter exception-format test files (`tests/qN.py`), loaded in the grader's process only.

Read the way Otter 7 reads them (`otter.test_files.exception_test`): the file is executed, `name`
names the question, `points` (a total or one value per case) is shared out as Otter shares it, and
every `@test_case` object it defines is a case, in definition order. Otter itself is not imported
(with pandas and the rest it costs a second per grading process): the files' own
`from otter.test_files import test_case` gets the small stand-in below.
"""

from __future__ import annotations

import builtins
import hashlib
import inspect
import linecache
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TestCase:
    question: str
    name: str
    points: float
    hidden: bool
    function: Callable[..., None]

    @property
    def params(self) -> list[str]:
        return list(inspect.signature(self.function).parameters)


@dataclass(frozen=True)
class Question:
    name: str
    cases: tuple[TestCase, ...]

    @property
    def points(self) -> float:
        return sum(case.points for case in self.cases)


class test_case:  # noqa: N801 - the name test files import from otter.test_files
    """Otter's test-case decorator: what a test file says of a case, and the function."""

    def __init__(self, name: str | None = None, points: float | None = None, hidden: bool = False,
                 success_message: str | None = None, failure_message: str | None = None) -> None:
        self.name, self.points, self.hidden = name, points, hidden
        self.success_message, self.failure_message = success_message, failure_message
        self.test_func: Callable[..., None] = lambda: None

    def __call__(self, test_func: Callable[..., None]) -> test_case:
        self.test_func = test_func
        return self


OTTER_TEST_FILES = types.ModuleType("otter.test_files")
OTTER_TEST_FILES.test_case = test_case  # type: ignore[attr-defined]


class BadTestFile(ValueError):
    """A test file Otter itself would refuse."""


def load_questions(sources: dict[str, str]) -> list[Question]:
    """Questions from test-file sources keyed by file name, in the order q1, q2, ..., q10."""
    questions = []
    for filename in sorted(sources, key=_natural):
        source = sources[filename]
        # Tests hand their nested helper functions to student code by source: let inspect find it.
        path = f"<tests {hashlib.sha256(source.encode()).hexdigest()[:12]} {filename}>"
        linecache.cache[path] = (len(source), None, source.splitlines(keepends=True), path)
        env = _execute(source, path)
        if "name" not in env:
            raise BadTestFile(f"Test file {path} does not define 'name'")
        found = [value for value in env.values() if isinstance(value, test_case)]
        points = resolve_points(env.get("points"), [case.points for case in found])
        cases = tuple(TestCase(env["name"], case.test_func.__name__, points[i], bool(case.hidden), case.test_func)
                      for i, case in enumerate(found))
        questions.append(Question(env["name"], cases))
    return questions


def _execute(source: str, path: str) -> dict[str, Any]:
    """Run a (course-authored, trusted) test file; its `otter.test_files` import gets the stand-in."""
    def importer(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:
        if level == 0 and name == "otter.test_files":
            return OTTER_TEST_FILES
        return builtins.__import__(name, globals, locals, fromlist, level)

    env: dict[str, Any] = {"__builtins__": {**vars(builtins), "__import__": importer}}
    exec(compile(source, path, "exec"), env)  # noqa: S102 - the course's own test file, grader side only
    return env


def resolve_points(total: Any, given: list[float | None]) -> list[float]:
    """Each case's points, as Otter's `resolve_test_file_points` shares them out."""
    if isinstance(total, list):
        if len(total) != len(given):
            raise BadTestFile("Points specified in test has different length than number of test cases")
        given, total = list(total), None
    elif total is not None and not isinstance(total, int | float):
        raise BadTestFile(f"Test spec points has invalid type: {type(total)}")
    for value in given:
        if value is not None and type(value) not in (int, float):
            raise BadTestFile(f"Invalid point type: {type(value)}")
    fixed = sum(value for value in given if value is not None)
    unset = sum(value is None for value in given)
    if total is not None:
        if fixed > total:
            raise BadTestFile("More points specified in test cases than allowed for test")
        share = (total - fixed) / unset if unset else 0.0
    elif fixed == 0 and all(value in (0, None) for value in given):
        share = 1 / unset if unset else 0.0  # only zeros given: the question is worth 1 point
    else:
        share = 0.0
    return [float(value if value is not None else share) for value in given]


def _natural(name: str) -> tuple[int, str]:
    digits = "".join(ch for ch in name if ch.isdigit())
    return (int(digits) if digits else 0, name)
