"""Run each test case with the student's names resolved through the bridge, and score it.

The test's own code (assertions, expected values, numpy/torch) runs here, in the grader's process;
only the student's functions run in the student's kernel.
"""

from __future__ import annotations

import re
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from autograder.checks.testfiles import Question, TestCase
from autograder.execution.bridge import StudentCodeError

# np.testing prints the arrays it compared: hidden tests must not show students the expected values.
_REVEALING = re.compile(
    r"^\s*(x:|y:|\[\d|Max absolute difference|Max relative difference|Mismatch at ind)|ACTUAL|DESIRED")
# (searched, not matched: numpy puts "(ACTUAL)"/"(DESIRED)" anywhere on a line)


class NameResolver(Protocol):
    def resolve(self, name: str) -> Any: ...


@dataclass
class CaseResult:
    name: str
    hidden: bool
    points: float
    max_points: float
    passed: bool
    message: str = ""  # what the student may read
    student_traceback: str = ""  # the student's own code's error, if it raised

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class QuestionResult:
    name: str
    cases: list[CaseResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def score(self) -> float:
        return sum(case.points for case in self.cases)

    @property
    def max_score(self) -> float:
        return sum(case.max_points for case in self.cases)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "score": self.score, "max_score": self.max_score,
                "seconds": round(self.seconds, 3), "cases": [c.to_dict() for c in self.cases]}


def student_message(error: BaseException, hidden: bool) -> str:
    """The failure as a student may see it: hidden tests keep their own words but lose any values."""
    if isinstance(error, StudentCodeError):
        return str(error)
    text = str(error).strip() or type(error).__name__
    if hidden:
        kept = [line for line in text.splitlines() if line.strip() and not _REVEALING.search(line)]
        text = " ".join(kept)[:500] or "a hidden check failed"
    if not isinstance(error, AssertionError):
        text = f"{type(error).__name__}: {text}"
    return text


def run_case(case: TestCase, resolver: NameResolver | None, unavailable: str | None) -> CaseResult:
    result = CaseResult(case.name, case.hidden, 0.0, case.points, False)
    if resolver is None:
        result.message = unavailable or "the notebook could not be run"
        return result
    try:
        arguments = {name: resolver.resolve(name) for name in case.params}
        case.function(**arguments)
    except StudentCodeError as error:
        result.message = student_message(error, case.hidden)
        result.student_traceback = error.student_traceback
    except Exception as error:  # noqa: BLE001 - any failure of a check is a failed check
        result.message = student_message(error, case.hidden)
        if not case.hidden and not isinstance(error, AssertionError):
            result.student_traceback = "".join(traceback.format_exception_only(type(error), error))[-2000:]
    else:
        result.passed, result.points = True, case.points
    return result


def run_questions(questions: list[Question], resolver: NameResolver | None, include_hidden: bool = True,
                  unavailable: str | None = None) -> list[QuestionResult]:
    results = []
    for question in questions:
        started = time.monotonic()
        outcome = QuestionResult(question.name)
        for case in question.cases:
            if case.hidden and not include_hidden:
                continue
            outcome.cases.append(run_case(case, resolver, unavailable))
        outcome.seconds = time.monotonic() - started
        results.append(outcome)
    return results
