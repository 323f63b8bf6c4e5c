"""One grading job: a plain function of plain data, so any executor (a local process pool, Dask on a
cluster) can run it. It never raises: whatever the submission does, a record comes back.

Assignments with a trained model (hw4) add the integrity runs: see integrity.training.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from autograder.checks.runner import QuestionResult, run_questions
from autograder.checks.testfiles import load_questions
from autograder.execution.bridge import Bridge, StudentCodeError
from autograder.execution.session import CellReport, NotebookSession
from autograder.grading.material import grader_code_digest
from autograder.grading.preflight import SandboxFault, start_as_canary
from autograder.intake.notebook import InvalidSubmission, parse_notebook
from autograder.integrity import mnist, training
from autograder.integrity.model_export import EXPORTER_SOURCE
from autograder.integrity.similarity import code_fingerprints
from autograder.sandbox.factory import make_sandbox
from autograder.sandbox.limits import Limits

GRADED, INVALID, FAILED = "graded", "invalid", "failed"
T = TypeVar("T")


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
    integrity: dict[str, Any] | None = None  # settings of the trained-model checks (hw4)
    data_dir: str | None = None  # folder with the MNIST IDX files, on the machine that runs the job
    backend: dict[str, Any] | None = None  # None: the local sandbox; else container settings (kind, engine, image)
    secret: str | None = None  # the grader's secret choosing hw4's stand-in test splits (kept in the store)
    canary: bool = False  # its first kernel checks the sandbox for the batch (a batch of one: no preflight)


@dataclass
class RunOutcome:
    cells: list[CellReport]
    restarts: int
    peak_memory_mb: float | None
    value: Any


def _sandbox(job: GradingJob, limits: Limits, data: dict[str, Path] | None, rerun: bool) -> Any:
    return make_sandbox(job.backend, job.sandboxed, limits, job.home_files, data, rerun)


def _run(job: GradingJob, limits: Limits, code: list[str], data: dict[str, Path] | None,
         work: Callable[[NotebookSession], T], cpu_stop: float | None = None, canary: bool = False,
         rerun: bool = False) -> RunOutcome:
    """Run the notebook once in a fresh sandbox, then `work` with the live session. `canary`: its
    kernel's start is the batch's check of the sandbox (SandboxFault stops the batch); `rerun`: a
    run compared with the first (see make_sandbox)."""
    with _sandbox(job, limits, data, rerun) as sandbox:
        start = functools.partial(start_as_canary, sandbox) if canary else None
        session = NotebookSession(sandbox, limits, code, cpu_stop, start)
        try:
            cells = session.run()
            value = work(session)
        finally:
            session.close()
        peak = sandbox.peak_memory_mb()
        return RunOutcome(cells, session.restarts, None if peak != peak else round(peak, 1), value)


def _graded_run(job: GradingJob, questions: list) -> Callable[[NotebookSession], tuple[list, Any]]:
    """The first run's work: the tests, then (hw4) the trained model."""
    export = _export(job.integrity) if job.integrity and job.include_hidden else None

    def work(session: NotebookSession) -> tuple[list[QuestionResult], training.RunExport | None]:
        if session.revive():
            results = run_questions(questions, Bridge(session), job.include_hidden)
        else:
            results = run_questions(questions, None, job.include_hidden,
                                    unavailable="the notebook's kernel could not be kept running")
        return results, export(session) if export else None
    return work


def _export(settings: dict[str, Any]) -> Callable[[NotebookSession], training.RunExport]:
    """Take the trained model and the declared names out of the kernel, as plain data."""
    def work(session: NotebookSession) -> training.RunExport:
        run = training.RunExport(cells=[c.status for c in session.reports],
                                 seconds=sum(c.seconds for c in session.reports))
        if not session.revive():
            run.error = "the notebook's kernel could not be kept running"
            return run
        bridge = Bridge(session)
        names = settings["names"]
        for key in ("SEED", "MEAN", "STD", "reported_accuracy"):
            try:
                run.names[key] = bridge.resolve(names.get(key, key))
            except StudentCodeError as error:
                run.names[key] = None
                run.error = str(error)
        try:
            setup = session.kernel.execute(EXPORTER_SOURCE, timeout=60)
            if setup.status != "ok":
                raise StudentCodeError(f"the model exporter did not load ({setup.error})")
            run.export = bridge.call("__autograder_export_model", (names.get("model", "model"),), {})
        except StudentCodeError as error:
            run.error = str(error)
        run.cpu_seconds = session.sandbox.cpu_seconds()  # after the grader's last request
        return run
    return work


def _data_views(raw: Path, standin: Path) -> dict[str, Path]:
    """What the sandbox sees under /data: the training split, and a stand-in for the test split
    (the real one never enters the sandbox)."""
    return {
        f"MNIST/raw/{mnist.TRAIN_IMAGES}": raw / mnist.TRAIN_IMAGES,
        f"MNIST/raw/{mnist.TRAIN_LABELS}": raw / mnist.TRAIN_LABELS,
        f"MNIST/raw/{mnist.TEST_IMAGES}": standin / mnist.TEST_IMAGES,
        f"MNIST/raw/{mnist.TEST_LABELS}": standin / mnist.TEST_LABELS,
    }


def _standin(raw: Path, folder: Path, secret: str, run: int) -> Path:
    """The stand-in test split of run `run` (runs 1 and 3 share one), written once per job."""
    target = folder / f"standin{1 if run == 3 else run}"
    if not target.is_dir():
        mnist.write_standin_test(raw, target, secret, 1 if run == 3 else run)
    return target


def _integrity(job: GradingJob, limits: Limits, code: list[str], first: training.RunExport,
               standins: Path, secret: str) -> dict[str, Any]:
    settings = job.integrity or {}
    raw = Path(job.data_dir or "")
    noise_seed = int(hashlib.sha256(f"{secret}:noise".encode()).hexdigest()[:8], 16)
    result = training.measure(first, raw, _standin(raw, standins, secret, 1), settings, noise_seed)
    if set(result["flags"]) & {training.NO_MODEL, training.NOT_MLP, training.OVER_BUDGET, training.INCONCLUSIVE}:
        result["reproducible"] = None
        return result
    rerun_stop = training.RERUN_CPU_FACTOR * settings["budget_cpu_seconds"]
    second = _run(job, limits, code, _data_views(raw, _standin(raw, standins, secret, 2)), _export(settings),
                  rerun_stop, rerun=True).value
    third = None
    if second.weights != first.weights and not second.stopped_by_clock:
        third = _run(job, limits, code, _data_views(raw, _standin(raw, standins, secret, 3)), _export(settings),
                     rerun_stop, rerun=True).value
    comparison = training.compare_runs(first, second, third)
    result["flags"] = result["flags"] + comparison.pop("flags", [])
    result.update(comparison)
    result["runs"] = 2 if third is None else 3
    return result


def grade_job(job: GradingJob) -> dict[str, Any]:
    started = time.monotonic()
    record: dict[str, Any] = {
        "assignment": job.assignment, "submission": job.submission, "filename": job.filename,
        "sha256": hashlib.sha256(job.notebook).hexdigest(), "grader_version": job.grader_version,
        "grader_code": grader_code_digest(),
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
        if job.integrity:
            integrity = {"flags": [training.NO_MODEL], "reproducible": None, "error": str(error)}
            record["integrity"] = integrity
            record["questions"] += training.integrity_questions(integrity, job.integrity)
        record["seconds"] = round(time.monotonic() - started, 3)
        return _bounded(record)
    record["code_sha256"] = parsed.code_fingerprint
    record["code_fingerprints"] = code_fingerprints(parsed.code_cells)  # for the TA's review of copies
    limits = Limits(**job.limits)
    # The stand-ins' secret: the store's, so that a regrade is identical; else one of this job's own.
    secret = job.secret or secrets.token_hex(16)
    standins = Path(tempfile.mkdtemp(prefix="autograder-standin-"))
    try:
        data = None
        if job.integrity and job.data_dir:
            data = _data_views(Path(job.data_dir), _standin(Path(job.data_dir), standins, secret, 1))
        # Run 1 past its CPU budget is over budget whatever it does next: its cell is stopped there.
        budget = job.integrity["budget_cpu_seconds"] if job.integrity and job.include_hidden else None
        first = _run(job, limits, parsed.code_cells, data, _graded_run(job, questions), budget, job.canary)
        record["cells"] = [c.to_dict() for c in first.cells]
        record["restarts"], record["peak_memory_mb"] = first.restarts, first.peak_memory_mb
        results, first_export = first.value
        record["questions"] = [r.to_dict() for r in results]
        if first_export is not None:
            integrity = _integrity(job, limits, parsed.code_cells, first_export, standins, secret)
            record["integrity"] = integrity
            record["questions"] += training.integrity_questions(integrity, job.integrity)
    except SandboxFault:
        raise  # the grader's fault, not this submission's: the batch stops, nothing is recorded
    except Exception as error:  # noqa: BLE001 - a job must always come back with a record
        record["status"] = FAILED
        record["message"] = f"the grader failed on this submission: {type(error).__name__}: {error}"
        record["traceback"] = traceback.format_exc()[-4000:]
        results = run_questions(questions, None, job.include_hidden, unavailable=record["message"])
        record["questions"] = [r.to_dict() for r in results]
    finally:
        shutil.rmtree(standins, ignore_errors=True)
    record["seconds"] = round(time.monotonic() - started, 3)
    return _bounded(record)


MAX_TEXT = 20_000  # characters of any one string a stored record keeps (messages, tracebacks, names)


def _bounded(value: Any) -> Any:
    """The record with every string cut to MAX_TEXT: what a submission made it say is stored bounded."""
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT else value[:MAX_TEXT] + " [cut]"
    if isinstance(value, dict):
        return {key: _bounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_bounded(item) for item in value]
    return value
