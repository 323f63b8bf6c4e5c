"""Shared fixtures: a private, built copy of the course, so tests never write into the checkout."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path

import pytest

from autograder.authoring.build import build
from autograder.course import Course

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_course() -> Course:
    return Course(REPO)


@pytest.fixture(scope="session")
def engine_pool() -> Iterator[Executor]:
    """One worker pool for the whole session (workers import torch once), two jobs at a time."""
    from autograder.grading.workers import default_executor

    pool = default_executor(2)
    yield pool
    pool.shutdown()


@pytest.fixture(scope="session")
def built_course(tmp_path_factory: pytest.TempPathFactory) -> Course:
    """The course's reference/ copied to a fresh folder and built there (masters' own tests run)."""
    root = tmp_path_factory.mktemp("course")
    shutil.copytree(REPO / "reference", root / "reference")
    course = Course(root)
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda a: build(a, run_tests=True), course.assignments()))
    return course


# What makes a test slow to start: a built course (the masters' own tests run) or real kernels.
KERNEL_FIXTURES = frozenset({"built_course", "engine_pool"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that need a built course or the worker pool start real kernels: marked `kernel`, so
    that `pytest -m "not kernel and not slow and not docker"` is the fast tier (seconds)."""
    for item in items:
        if KERNEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.kernel)
