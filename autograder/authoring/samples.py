"""Sample submissions made from the master: the reference, the blank stub and realistic mistakes.

Each mistake is a list of text edits to the reference answers (reference/<hw>/samples.toml), together
with the score each affected question must get. The samples are executed like real submissions and
bundled in reference/<hw>/submissions/ (hidden: they contain the solution).
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from autograder import notebooks
from autograder.course import Assignment, CourseError

REFERENCE = "reference"
BLANK = "blank"
_MARKER = re.compile(r"^\s*#\s*(BEGIN|END) SOLUTION\b.*$", re.IGNORECASE)


@dataclass(frozen=True)
class Edit:
    find: str
    replace: str


@dataclass(frozen=True)
class SampleSpec:
    """A sample and what grading it must give: `scores` lists the questions that do not get full
    marks (None: every question full, the reference; "zero": every question 0, the blank stub)."""

    name: str
    description: str
    scores: dict[str, float] | str | None = None
    edits: tuple[Edit, ...] = field(default_factory=tuple)
    expect: dict | None = None  # trained-model samples: {"eligible": bool, "reasons": [flags]}


def load_specs(assignment: Assignment) -> list[SampleSpec]:
    specs = [
        SampleSpec(REFERENCE, "the reference solution", None),
        SampleSpec(BLANK, "the student notebook as handed out, nothing filled in", "zero"),
    ]
    if not assignment.samples_spec.is_file():
        return specs
    try:
        data = tomllib.loads(assignment.samples_spec.read_text(encoding="utf-8"))
        for entry in data.get("sample", []):
            specs.append(
                SampleSpec(
                    name=entry["name"],
                    description=entry["description"],
                    scores={q: float(s) for q, s in entry.get("scores", {}).items()},
                    edits=tuple(Edit(e["find"], e["replace"]) for e in entry["edit"]),
                    expect=entry.get("expect"),
                )
            )
    except (tomllib.TOMLDecodeError, KeyError, TypeError, AttributeError) as error:
        raise CourseError(
            f"{assignment.samples_spec}: {error!r}; each [[sample]] needs name, description, "
            "scores = {qN = points} and [[sample.edit]] entries with find/replace"
        ) from error
    return specs


def reference_notebook(assignment: Assignment) -> nbformat.NotebookNode:
    """The student notebook with every answer cell filled in from the grader's solution notebook."""
    student = notebooks.read(assignment.student_notebook)
    solved = notebooks.read(assignment.autograder_notebook)
    solutions = {cell.id: cell for cell in solved.cells}
    for cell in student.cells:
        if notebooks.ANSWER_TAG in notebooks.cell_tags(cell):
            lines = solutions[cell.id].source.splitlines()
            cell.source = "\n".join(line for line in lines if not _MARKER.match(line))
    return student


def apply_edits(nb: nbformat.NotebookNode, spec: SampleSpec, where: Path) -> nbformat.NotebookNode:
    nb = copy.deepcopy(nb)
    answers = [c for c in nb.cells if notebooks.ANSWER_TAG in notebooks.cell_tags(c)]
    for edit in spec.edits:
        hits = [c for c in answers if edit.find in c.source]
        count = sum(c.source.count(edit.find) for c in hits)
        if count != 1:
            raise CourseError(
                f"{where}: sample {spec.name!r}: `find` text {edit.find!r} occurs {count} times in "
                "the reference answers; it must occur exactly once"
            )
        hits[0].source = hits[0].source.replace(edit.find, edit.replace)
    return nb


def sample_notebooks(assignment: Assignment) -> dict[str, nbformat.NotebookNode]:
    """Unexecuted sample notebooks by name (needs a built assignment)."""
    reference = reference_notebook(assignment)
    made = {}
    for spec in load_specs(assignment):
        if spec.name == BLANK:
            made[spec.name] = notebooks.read(assignment.student_notebook)
        else:
            made[spec.name] = apply_edits(reference, spec, assignment.samples_spec)
    return made


def execute(nb: nbformat.NotebookNode, workdir: Path, timeout: int = 600,
            env: dict[str, str] | None = None) -> nbformat.NotebookNode:
    """Run a notebook top to bottom as a student would before submitting (errors kept in outputs;
    a cell past `timeout` is interrupted)."""
    saved = {key: os.environ.get(key) for key in env or {}}
    os.environ.update(env or {})  # the kernel inherits this process's environment
    try:
        NotebookClient(
            nb, timeout=timeout, kernel_name="python3", allow_errors=True, interrupt_on_timeout=True,
            resources={"metadata": {"path": str(workdir)}},
        ).execute()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return nb


def make_samples(assignment: Assignment, data_dir: Path | None = None, timeout: int = 600) -> list[Path]:
    """Execute every sample and store it in reference/<hw>/submissions/<name>.ipynb. `data_dir` (the
    folder holding MNIST/raw/) is given to notebooks that load data, as the grader does."""
    env = {"AUTOGRADER_DATA": str(data_dir)} if data_dir else None
    written = []
    with tempfile.TemporaryDirectory(prefix=f"samples-{assignment.name}-") as tmp:
        for name, nb in sample_notebooks(assignment).items():
            workdir = Path(tmp) / name
            shutil.copytree(assignment.student_dir, workdir)
            executed = notebooks.canonicalise(execute(nb, workdir, timeout, env), assignment.name)
            target = assignment.submissions_dir / f"{name}.ipynb"
            notebooks.write(executed, target)
            written.append(target)
    return written
