"""Reading and writing notebooks in one canonical form, so that builds are byte-for-byte reproducible."""

from __future__ import annotations

from pathlib import Path

import nbformat

ANSWER_TAG = "otter_answer_cell"


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)


def canonicalise(nb: nbformat.NotebookNode, prefix: str) -> nbformat.NotebookNode:
    """Give cells stable ids (Otter draws random ones) and drop volatile metadata."""
    for index, cell in enumerate(nb.cells):
        cell["id"] = f"{prefix}-{index:03d}"
        cell.get("metadata", {}).pop("execution", None)
    nb.metadata.pop("widgets", None)
    nb.nbformat, nb.nbformat_minor = 4, 5
    return nb


def write(nb: nbformat.NotebookNode, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = nbformat.writes(nb, version=4)
    path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")


def cell_tags(cell: nbformat.NotebookNode) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))
