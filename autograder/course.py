"""Where the course's material lives: one place that knows the folder layout and the data setting.

The layout is fixed by convention:
    reference/<hw>/<hw>.ipynb        hidden master (solutions, public and hidden tests)
    reference/<hw>/samples.toml      realistic mistakes, turned into sample submissions
    reference/<hw>/submissions/      bundled, executed sample submissions (hidden: they hold solutions)
    assignments/<hw>/                what students get (built, committed)
    dist/<hw>/                       grader material built from the master (never committed)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

COURSE_ENV = "AUTOGRADER_COURSE"
DATA_ENV = "AUTOGRADER_DATA"
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


class CourseError(Exception):
    """A problem with the course material or settings that the user can fix; the message says how."""


@dataclass(frozen=True)
class Assignment:
    name: str
    root: Path  # the course root

    @property
    def master(self) -> Path:
        return self.root / "reference" / self.name / f"{self.name}.ipynb"

    @property
    def samples_spec(self) -> Path:
        return self.root / "reference" / self.name / "samples.toml"

    @property
    def grading_settings_source(self) -> Path:
        """Optional grader settings of the assignment (limits, trained-model checks, leaderboard)."""
        return self.root / "reference" / self.name / "grading.toml"

    @property
    def grading_settings(self) -> Path:
        return self.dist_dir / "grading.toml"

    @property
    def submissions_dir(self) -> Path:
        return self.root / "reference" / self.name / "submissions"

    @property
    def student_dir(self) -> Path:
        return self.root / "assignments" / self.name

    @property
    def student_notebook(self) -> Path:
        return self.student_dir / f"{self.name}.ipynb"

    @property
    def dist_dir(self) -> Path:
        return self.root / "dist" / self.name

    @property
    def autograder_notebook(self) -> Path:
        return self.dist_dir / "autograder" / f"{self.name}.ipynb"

    @property
    def autograder_zip(self) -> Path:
        return self.dist_dir / f"{self.name}-autograder.zip"

    @property
    def student_zip(self) -> Path:
        return self.dist_dir / f"{self.name}-student.zip"

    @property
    def tests_dir(self) -> Path:
        """All tests, public and hidden, as Otter test files (grader side only)."""
        return self.dist_dir / "tests"


@dataclass(frozen=True)
class Course:
    root: Path

    @classmethod
    def locate(cls, root: str | os.PathLike[str] | None = None) -> Course:
        """The course root: the argument, else $AUTOGRADER_COURSE, else the current folder or the
        checkout this package lives in, whichever holds a `reference/` or `assignments/` folder."""
        if root:
            candidates = [Path(root)]
        elif os.environ.get(COURSE_ENV):
            candidates = [Path(os.environ[COURSE_ENV])]
        else:
            candidates = [Path.cwd(), Path(__file__).resolve().parents[1]]
        for candidate in candidates:
            path = candidate.resolve()
            if (path / "reference").is_dir() or (path / "assignments").is_dir():
                return cls(path)
        raise CourseError(
            f"no course found at {', '.join(map(str, candidates))}: a course folder holds "
            f"reference/ and assignments/; run from it, pass --course, or set {COURSE_ENV}"
        )

    def assignment_names(self) -> list[str]:
        """Assignments with a master notebook, in name order (hw1_..., hw2_..., ...)."""
        ref = self.root / "reference"
        return sorted(p.name for p in ref.iterdir() if (p / f"{p.name}.ipynb").is_file())

    def assignment(self, name: str) -> Assignment:
        known = self.assignment_names()
        if name not in known:
            raise CourseError(f"unknown assignment {name!r}: the course has {', '.join(known)}")
        return Assignment(name, self.root)

    def assignments(self, names: list[str] | None = None) -> list[Assignment]:
        return [self.assignment(n) for n in (names or self.assignment_names())]

    def data_dir(self, override: str | os.PathLike[str] | None = None) -> Path:
        """The data root (holding MNIST/raw/): --data, else $AUTOGRADER_DATA, else ../shared/data
        beside the course as a last resort. Nothing is ever downloaded."""
        chosen = override or os.environ.get(DATA_ENV)
        return Path(chosen).resolve() if chosen else (self.root.parent / "shared" / "data").resolve()

    def mnist_raw_dir(self, override: str | os.PathLike[str] | None = None) -> Path:
        raw = self.data_dir(override) / "MNIST" / "raw"
        missing = [f for f in MNIST_FILES if not (raw / f).is_file()]
        if missing:
            raise CourseError(
                f"MNIST files missing in {raw}: {', '.join(missing)}. Nothing is downloaded: put the "
                f"four uncompressed IDX files in <data>/MNIST/raw/ and point --data or {DATA_ENV} at <data>"
            )
        return raw
