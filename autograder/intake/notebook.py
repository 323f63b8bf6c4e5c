"""From submitted bytes to the code cells to run, or a message that says what is wrong and what to do."""

from __future__ import annotations

import ast
import hashlib
import json
import warnings
from dataclasses import dataclass

import nbformat

MAX_NOTEBOOK_BYTES = 50 * 1024 * 1024
RESUBMIT = "export the notebook from Jupyter (File > Save) and submit the .ipynb file again"


class InvalidSubmission(ValueError):
    pass


@dataclass(frozen=True)
class ParsedNotebook:
    code_cells: list[str]
    nbformat_version: int

    @property
    def code_fingerprint(self) -> str:
        """The same for two notebooks whose code differs only in comments, blank lines and spacing."""
        digest = hashlib.sha256()
        for source in self.code_cells:
            try:
                text = ast.unparse(ast.parse(source))
            except SyntaxError:  # IPython magics: compare the lines without comments and spacing
                lines = (line.split("#", 1)[0].strip() for line in source.splitlines())
                text = "\n".join(line for line in lines if line)
            if text:
                digest.update(text.encode() + b"\0")
        return digest.hexdigest()


def parse_notebook(filename: str, data: bytes) -> ParsedNotebook:
    """Validate a submitted notebook. Raises InvalidSubmission with a message for the student."""
    if not filename.lower().endswith(".ipynb"):
        raise InvalidSubmission(f"{filename}: expected a Jupyter notebook (.ipynb); {RESUBMIT}")
    if not data.strip():
        raise InvalidSubmission(f"{filename}: the file is empty; {RESUBMIT}")
    if len(data) > MAX_NOTEBOOK_BYTES:
        limit_mb = MAX_NOTEBOOK_BYTES // 1024 // 1024
        raise InvalidSubmission(
            f"{filename}: {len(data) / 1024 / 1024:.0f} MB is over the {limit_mb} MB limit; clear large "
            "outputs (Kernel > Restart & Clear Output), then save and submit again")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidSubmission(f"{filename}: not UTF-8 text (byte {error.start}); {RESUBMIT}") from error
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidSubmission(
            f"{filename}: not valid notebook JSON (line {error.lineno}: {error.msg}); the file may be "
            f"truncated or edited by hand; {RESUBMIT}") from error
    if not isinstance(raw, dict) or "cells" not in raw and "worksheets" not in raw:
        raise InvalidSubmission(f"{filename}: JSON, but not a Jupyter notebook (no cells); {RESUBMIT}")
    version = raw.get("nbformat")
    if not isinstance(version, int) or version < 3:
        raise InvalidSubmission(f"{filename}: unknown notebook format {version!r}; {RESUBMIT}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nb = nbformat.reads(text, as_version=4)  # converts nbformat 3
    except Exception as error:  # noqa: BLE001 - any parse failure is the submission's
        raise InvalidSubmission(f"{filename}: not a readable notebook ({error}); {RESUBMIT}") from error
    language = str(nb.metadata.get("kernelspec", {}).get("language")
                   or nb.metadata.get("language_info", {}).get("name") or "python")
    if language.lower() != "python":
        raise InvalidSubmission(
            f"{filename}: this notebook uses the {language} kernel; the assignment is graded in Python 3. "
            "Start from the assignment's notebook and submit it")
    cells = []
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        if not isinstance(source, str):
            raise InvalidSubmission(f"{filename}: a code cell has no readable source; {RESUBMIT}")
        cells.append(source)
    if not cells:
        raise InvalidSubmission(f"{filename}: the notebook has no code cells; submit the assignment notebook")
    return ParsedNotebook(cells, version)
