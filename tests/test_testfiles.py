"""Test files are read as Otter 7 reads them, without importing Otter: the same questions, cases,
points and hidden flags, and the same refusals (checked against Otter's own code)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from otter.test_files.abstract_test import TestCase as OtterCase
from otter.test_files.abstract_test import TestFile
from otter.test_files.exception_test import ExceptionTestFile

from autograder.checks.testfiles import BadTestFile, load_questions, resolve_points

SOURCE = '''
from otter.test_files import test_case
import math

OK_FORMAT = False
name = "q3"
points = {points}

@test_case(points={first}, hidden=False)
def test_public(f):
    assert f(1) == 1

@test_case(hidden=True, success_message="well done")
def test_hidden(f, env):
    assert math.isclose(f(2), 4)

@test_case(points=None, hidden=True)
def test_more(f):
    assert f(0) == 0
'''


def _otter(source: str) -> list[tuple[str, float, bool]]:
    parsed = ExceptionTestFile.from_string(source, path="q3.py")
    return [(c.body.test_func.__name__, float(c.points or 0), bool(c.hidden)) for c in parsed.test_cases]


def _ours(source: str) -> list[tuple[str, float, bool]]:
    (question,) = load_questions({"q3.py": source})
    assert question.name == "q3"
    return [(c.name, c.points, c.hidden) for c in question.cases]


@pytest.mark.parametrize(("points", "first"), [("None", "None"), ("6", "None"), ("6", "2"), ("[1, 2, 3]", "None"),
                                               ("None", "2"), ("0", "None"), ("None", "0")])
def test_a_test_file_reads_as_otter_reads_it(points: str, first: str) -> None:
    source = SOURCE.format(points=points, first=first)
    assert _ours(source) == _otter(source)


@pytest.mark.parametrize(("points", "first"), [("[1, 2]", "None"), ("1", "2"), ("'six'", "None")])
def test_what_otter_refuses_is_refused(points: str, first: str) -> None:
    source = SOURCE.format(points=points, first=first)
    with pytest.raises((ValueError, TypeError, AssertionError)):
        _otter(source)
    with pytest.raises(BadTestFile):
        _ours(source)


def test_a_file_without_a_name_is_refused_with_its_path() -> None:
    with pytest.raises(BadTestFile, match="does not define 'name'"):
        load_questions({"q9.py": "x = 1\n"})


def test_the_real_otter_package_is_not_imported() -> None:
    """The stand-in answers the test files' import; grading processes never load Otter (a second)."""
    import subprocess
    import sys

    code = ("import sys\nfrom autograder.checks.testfiles import load_questions\n"
            "load_questions({'q1.py': 'from otter.test_files import test_case\\nname = \"q1\"\\n'"
            "'@test_case()\\ndef test_a(x):\\n    pass\\n'})\n"
            "print(any(m == 'otter' or m.startswith('otter.') for m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


points_value = st.one_of(st.none(), st.integers(0, 5), st.floats(0, 5, allow_nan=False))


@given(total=st.one_of(st.none(), st.integers(0, 20), st.floats(0, 20, allow_nan=False),
                       st.lists(st.integers(0, 5), max_size=6)),
       given_points=st.lists(points_value, max_size=6))
def test_points_are_shared_out_as_otter_shares_them(total: object, given_points: list) -> None:
    cases = [OtterCase(name=f"c{i}", body=None, hidden=False, points=p, success_message=None, failure_message=None)
             for i, p in enumerate(given_points)]
    try:
        theirs = [float(c.points) for c in TestFile.resolve_test_file_points(total, cases)]
    except (ValueError, TypeError, AssertionError):
        with pytest.raises(BadTestFile):
            resolve_points(total, given_points)
        return
    assert resolve_points(total, given_points) == pytest.approx(theirs)
