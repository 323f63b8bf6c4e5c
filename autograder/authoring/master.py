"""Reading an Otter-format master notebook: which lines are secret (solutions, hidden tests)."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

from autograder import notebooks

# Lines this short, or this generic, say nothing about a solution ("return out", '"""').
MIN_SECRET_LENGTH = 16

_BEGIN_SOLUTION = re.compile(r"^\s*#\s*BEGIN SOLUTION\b", re.IGNORECASE)
_END_SOLUTION = re.compile(r"^\s*#\s*END SOLUTION\b", re.IGNORECASE)
_LINE_SOLUTION = re.compile(r"#\s*SOLUTION\s*$", re.IGNORECASE)
_HIDDEN_CONFIG = re.compile(r"^\s*hidden\s*:\s*true\s*$", re.IGNORECASE | re.MULTILINE)


def normalise(line: str) -> str:
    return " ".join(line.split())


@dataclass
class MasterSecrets:
    """The master's lines, split into those students may see and those they must never see."""

    solution_lines: set[str] = field(default_factory=set)
    hidden_test_lines: set[str] = field(default_factory=set)
    public_lines: set[str] = field(default_factory=set)

    def secret_lines(self) -> set[str]:
        secret = (self.solution_lines | self.hidden_test_lines) - self.public_lines
        return {line for line in secret if len(line) >= MIN_SECRET_LENGTH}


def _is_hidden_test(source: str) -> bool:
    first = source.lstrip().splitlines()[0] if source.strip() else ""
    if first.startswith("#") and re.search(r"\bhidden\b", first, re.IGNORECASE):
        return True
    return '""" # BEGIN TEST CONFIG' in source and bool(_HIDDEN_CONFIG.search(source))


def _unparsed_lines(source: str) -> set[str]:
    try:
        return {normalise(line) for line in ast.unparse(ast.parse(source)).splitlines()}
    except SyntaxError:
        return set()


def read_secrets(master: Path) -> MasterSecrets:
    nb = notebooks.read(master)
    secrets = MasterSecrets()
    in_tests = False
    for cell in nb.cells:
        source = cell.source
        if cell.cell_type == "raw":
            marker = source.strip().splitlines()[0].strip().upper() if source.strip() else ""
            if marker.startswith("# BEGIN TESTS"):
                in_tests = True
            elif marker.startswith("# END TESTS"):
                in_tests = False
            continue
        lines = [normalise(line) for line in source.splitlines()]
        if cell.cell_type == "code" and in_tests:
            # Otter re-formats test code (ast.unparse): compare both spellings.
            both = set(lines) | _unparsed_lines(source)
            target = secrets.hidden_test_lines if _is_hidden_test(source) else secrets.public_lines
            target.update(both)
            continue
        in_solution = False
        for raw, line in zip(source.splitlines(), lines, strict=True):
            if _BEGIN_SOLUTION.match(raw):
                in_solution = True
            elif _END_SOLUTION.match(raw):
                in_solution = False
            elif in_solution or _LINE_SOLUTION.search(raw):
                secrets.solution_lines.add(line)
            elif cell.cell_type == "code":
                # Only code the students are given anyway; prose pasted from a solution is a leak.
                secrets.public_lines.add(line)
    return secrets
