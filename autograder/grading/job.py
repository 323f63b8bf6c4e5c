"""One grading job: a plain function of plain data, so any executor (a local process pool, Dask on a
cluster) can run it. It never raises: whatever the submission does, a record comes back."""

from __future__ import annotations

import hashlib
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from autograder.checks.runner import run_questions
from autograder.checks.testfiles import load_questions
from autograder.execution.bridge import Bridge
from autograder.execution.session import NotebookSession
from autograder.intake.notebook import InvalidSubmission, parse_notebook
from autograder.sandbox.limits import Limits
from autograder.sandbox.local import LocalSandbox
from autograder.sandbox.plain import PlainSandbox

GRADED, INVALID, FAILED = "graded", "invalid", "failed"


@dataclass(frozen=True)
class GradingJob:
    assignment: str
    submission: str  # its label in the batch
    filename: str
    notebook: bytes
    tests: dict[str, str]
    home_files: dict[str, bytes]
    limits: dict[str, Any]
    grader_version: str
    include_hidden: bool = True
    read_error: str | None = None
    sandboxed: bool = True  # False only for a student's own `validate`
    extra: dict[str, Any] = field(default_factory=dict)


def grade_job(job: GradingJob) -> dict[str, Any]:
    started = time.monotonic()
    record: dict[str, Any] = {
        "assignment": job.assignment, "submission": job.submission, "filename": job.filename,
        "sha256": hashlib.sha256(job.notebook).hexdigest(), "grader_version": job.grader_version,
        "status": GRADED, "message": None, "questions": [], "cells": [], "restarts": 0,
        "peak_memory_mb": None, "include_hidden": job.include_hidden,
    }
    questions = load_questions(job.tests)
    try:
        if job.read_error:
            raise InvalidSubmission(job.read_error)
        parsed = parse_notebook(job.filename, job.notebook)
    except InvalidSubmission as error:
        record["status"], record["message"] = INVALID, str(error)
        results = run_questions(questions, None, job.include_hidden, unavailable=str(error))
        record["questions"] = [r.to_dict() for r in results]
        record["seconds"] = round(time.monotonic() - started, 3)
        return record
    limits = Limits(**job.limits)
    try:
        wall = LocalSandbox if job.sandboxed else PlainSandbox
        with wall(limits, job.home_files) as sandbox:
            session = NotebookSession(sandbox, limits, parsed.code_cells)
            try:
                cells = session.run()
                if session.revive():
                    results = run_questions(questions, Bridge(session), job.include_hidden)
                else:
                    results = run_questions(questions, None, job.include_hidden,
                                            unavailable="the notebook's kernel could not be kept running")
            finally:
                session.close()
            record["cells"] = [c.to_dict() for c in cells]
            record["restarts"] = session.restarts
            peak = sandbox.peak_memory_mb()
            record["peak_memory_mb"] = None if peak != peak else round(peak, 1)
        record["questions"] = [r.to_dict() for r in results]
    except Exception as error:  # noqa: BLE001 - a job must always come back with a record
        record["status"] = FAILED
        record["message"] = f"the grader failed on this submission: {type(error).__name__}: {error}"
        record["traceback"] = traceback.format_exc()[-4000:]
        results = run_questions(questions, None, job.include_hidden, unavailable=record["message"])
        record["questions"] = [r.to_dict() for r in results]
    record["seconds"] = round(time.monotonic() - started, 3)
    return record
