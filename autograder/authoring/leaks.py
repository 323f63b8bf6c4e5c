"""Proving that nothing secret reaches students: the check reads content, not markers."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from autograder.authoring.master import normalise, read_secrets


@dataclass(frozen=True)
class Leak:
    where: str
    line: str

    def __str__(self) -> str:
        return f"{self.where}: {self.line}"


def _strings(value: object) -> Iterator[str]:
    """Every string inside decoded JSON (a notebook's cells and its metadata, where Otter puts tests)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _text_lines(name: str, data: bytes) -> Iterator[str]:
    text = data.decode("utf-8", errors="replace")
    if name.endswith(".ipynb"):
        try:
            chunks = list(_strings(json.loads(text)))
        except json.JSONDecodeError:
            chunks = [text]
    else:
        chunks = [text]
    for chunk in chunks:
        for line in chunk.splitlines():
            yield normalise(line)


def _files(paths: Iterable[Path]) -> Iterator[tuple[str, bytes]]:
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file():
                    yield from _files([child])
        elif path.suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    if not info.is_dir():
                        yield f"{path}!{info.filename}", archive.read(info)
        else:
            yield str(path), path.read_bytes()


def find_leaks(master: Path, student_material: Iterable[Path]) -> list[Leak]:
    """Solution lines and hidden-test lines of `master` found anywhere in the student material."""
    secret = read_secrets(master).secret_lines()
    leaks = []
    for where, data in _files(student_material):
        for line in _text_lines(where, data):
            if line in secret:
                leaks.append(Leak(where, line))
    return leaks
