"""What grading one assignment needs, as plain data that can travel to any worker or machine."""

from __future__ import annotations

import functools
import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from autograder import __version__
from autograder.course import Assignment, CourseError


def grading_settings(assignment: Assignment) -> dict:
    """The built assignment's grading.toml (limits, trained-model checks, leaderboard); {} if none."""
    if not assignment.grading_settings.is_file():
        return {}
    try:
        return tomllib.loads(assignment.grading_settings.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise CourseError(f"{assignment.grading_settings_source}: {error}") from error


@dataclass(frozen=True)
class Material:
    assignment: str
    tests: dict[str, str]  # grader side only: test file name -> source (public and hidden)
    home_files: dict[str, bytes]  # public student material, copied into each sandbox
    settings: dict = field(default_factory=dict)

    @classmethod
    def load(cls, assignment: Assignment) -> Material:
        if not assignment.tests_dir.is_dir():
            raise CourseError(
                f"{assignment.tests_dir} is missing: run `autograder build {assignment.name}` first")
        tests = {p.name: p.read_text(encoding="utf-8") for p in sorted(assignment.tests_dir.glob("*.py"))}
        home = {
            str(p.relative_to(assignment.student_dir)): p.read_bytes()
            for p in sorted(assignment.student_dir.rglob("*")) if p.is_file()
        }
        return cls(assignment.name, tests, home, grading_settings(assignment))

    @property
    def integrity(self) -> dict | None:
        """Settings of the trained-model checks, with defaults, or None for plain assignments."""
        if "integrity" not in self.settings:
            return None
        defaults = {"threshold": 0.95, "points_accuracy": 10.0, "points_reproducible": 5.0, "budget_seconds": 300.0,
                    "budget_cpu_seconds": 600.0, "report_tolerance": 0.005, "max_noise_drop": 0.10, "names": {},
                    "evaluation_cpu_seconds": 120, "evaluation_memory_mb": 2048}
        return defaults | self.settings["integrity"]

    def version(self, limits: dict) -> str:
        """Changes whenever anything that can change a grade changes: then stored grades are stale."""
        digest = hashlib.sha256()
        digest.update(json.dumps({"grader": __version__, "code": grader_code_digest(), "limits": limits,
                                  "settings": self.settings}, sort_keys=True).encode())
        for name in sorted(self.tests):
            digest.update(name.encode() + b"\0" + self.tests[name].encode() + b"\0")
        for name in sorted(self.home_files):
            digest.update(name.encode() + b"\0" + self.home_files[name] + b"\0")
        return digest.hexdigest()[:16]


@functools.cache
def grader_code_digest() -> str:
    """The grading code's own content: a fixed grader never serves grades the broken one stored."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()
