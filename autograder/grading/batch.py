"""Grading a class: collect submissions, skip what the store already has, run the rest through any
`concurrent.futures` executor, store each result as it arrives, then write the reports.

The executor is a parameter: the default is a local process pool; a Dask `Client.get_executor()`
(a cluster, or Slurm through dask-jobqueue) runs the very same `grade_job` calls. Only this process
writes to the store.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from autograder.course import Assignment, CourseError
from autograder.grading.job import FAILED, INVALID, GradingJob, grade_job
from autograder.grading.material import Material, grader_code_digest
from autograder.grading.preflight import SandboxFault, preflight
from autograder.grading.workers import (
    WORKER_MEMORY_MB,
    KernelTemplates,
    default_executor,
    import_in_background,
    warm_modules,
    warm_up,
)
from autograder.intake.collect import Submission, collect
from autograder.reports.feedback import write_feedback
from autograder.reports.grades_csv import write_grades_csv
from autograder.reports.gradescope import write_gradescope
from autograder.reports.leaderboard import (
    Leaderboard,
    build_leaderboard,
    gradescope_entries,
    read_review,
    write_leaderboard,
)
from autograder.reports.summary import write_summary
from autograder.sandbox.limits import Limits
from autograder.store import Store


@dataclass
class BatchOptions:
    limits: Limits | None = None  # None: the assignment's grading.toml [limits], then `overrides`
    overrides: dict[str, Any] = field(default_factory=dict)
    jobs: int = os.cpu_count() or 1
    regrade: bool = False
    include_hidden: bool = True
    progress: bool = True
    data_dir: Path | None = None  # MNIST raw folder, for assignments with trained-model checks
    backend: dict[str, Any] | None = None  # None: the local sandbox; else container settings (engine, image)
    integrity_overrides: dict[str, Any] = field(default_factory=dict)  # e.g. a smaller budget for small data
    worker_memory_mb: int = WORKER_MEMORY_MB  # each grading worker's own memory limit (our own pool only)
    on_graded: Callable[[], None] | None = None  # called as each submission is graded (a caller's progress bar)

    def limits_for(self, material: Material) -> Limits:
        if self.limits is not None:
            return self.limits
        return Limits(**(material.settings.get("limits", {}) | self.overrides))


@dataclass
class BatchOutcome:
    records: list[dict[str, Any]]
    graded: int = 0
    cached: int = 0
    seconds: float = 0.0

    @property
    def ungraded(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["status"] != "graded"]


def file_stem(label: str) -> str:
    """A file name for a submission label (which may hold spaces, unicode or shell characters)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("._-") or "submission"
    return stem[:100]


def _job(material: Material, submission: Submission, limits: dict, version: str, options: BatchOptions,
         secret: str | None) -> GradingJob:
    return GradingJob(material.assignment, submission.name, submission.filename, submission.data, material.tests,
                      material.home_files, limits, version, options.include_hidden, submission.error,
                      integrity=material.integrity, data_dir=str(options.data_dir) if options.data_dir else None,
                      backend=options.backend, secret=secret)


def _failed_record(job: GradingJob, error: BaseException) -> dict[str, Any]:
    """A worker died under a job (not the submission's doing): reported, not stored, retried next run."""
    import hashlib

    return {"assignment": job.assignment, "submission": job.submission, "filename": job.filename,
            "sha256": hashlib.sha256(job.notebook).hexdigest(), "grader_version": job.grader_version,
            "status": FAILED, "message": f"the grading worker failed ({type(error).__name__}: {error}); run again",
            "questions": [], "cells": [], "restarts": 0, "peak_memory_mb": None, "seconds": 0.0}


def grade_batch(assignment: Assignment, paths: list[Path], out: Path, store: Store, options: BatchOptions,
                executor: Executor | None = None, warm_pool: tuple[Executor, Future] | None = None) -> BatchOutcome:
    """`executor`: someone else's (a shared pool, a cluster's); `warm_pool`: a pool of this batch's
    own that the caller already started (`workers.start_workers`), with its first worker's warm-up."""
    started = time.monotonic()
    material = Material.load(assignment)
    if material.integrity and options.data_dir is None:
        raise CourseError(f"{assignment.name} checks trained models on MNIST: give the data folder (--data)")
    if options.integrity_overrides and material.integrity:
        integrity = material.settings["integrity"] | options.integrity_overrides
        material = replace(material, settings=material.settings | {"integrity": integrity})
    limits = options.limits_for(material).to_dict()
    version = material.version(limits)
    submissions = collect(paths)
    outcome = BatchOutcome(records=[])
    by_name: dict[str, dict[str, Any]] = {}
    pending: list[GradingJob] = []
    for submission in submissions:
        store.note_submission(assignment.name, submission.name, submission.sha256)
        cached = None if options.regrade else store.get(assignment.name, submission.sha256, version)
        if cached is not None and cached.get("include_hidden", True) == options.include_hidden:
            by_name[submission.name] = cached | {"submission": submission.name, "filename": submission.filename}
            outcome.cached += 1
        else:
            secret = store.secret(assignment.name, submission.sha256) if material.integrity else None
            pending.append(_job(material, submission, limits, version, options, secret))
    if warm_pool is not None and not pending:
        warm_pool[0].shutdown(cancel_futures=True)
    if pending:
        import_in_background(("matplotlib.pyplot",))  # the reports' plots, while the jobs run
        own_pool = executor is None
        pool = executor or (warm_pool[0] if warm_pool else
                            default_executor(min(options.jobs, len(pending)), options.worker_memory_mb))
        try:
            if warm_pool is not None:
                warm_pool[1].result()  # its worker is idle now: the first job goes to it, not to a new one
            elif own_pool:  # the workers start and import what the tests need while the canary runs
                templates = None if options.backend else KernelTemplates(
                    Limits(**limits).threads, reruns=material.integrity is not None)
                for _ in range(min(options.jobs, len(pending))):
                    pool.submit(warm_up, warm_modules(material.tests), templates)
            # A sandbox that cannot start grades no one: a canary first, or (a batch of one) the
            # submission's own first kernel start is the canary.
            if len(pending) == 1:
                pending[0] = replace(pending[0], canary=True)
            else:
                preflight(options.backend, True, Limits(**limits))
            for job, record in _grade_pending(pending, pool, options, assignment.name, own_pool=own_pool):
                if record["status"] != FAILED:
                    store.put(record)
                by_name[job.submission] = record
                outcome.graded += 1
                if options.on_graded:
                    options.on_graded()
        finally:
            if own_pool:
                pool.shutdown(wait=True, cancel_futures=True)
    outcome.records = [by_name[s.name] for s in submissions]
    if material.integrity:
        publish_leaderboard(assignment.name, material, store, out, outcome.records)
    else:
        write_reports(assignment.name, outcome.records, out)
    outcome.seconds = time.monotonic() - started
    return outcome


def _grade_pending(pending: list[GradingJob], executor: Executor | None, options: BatchOptions, name: str,
                   work: Callable[[GradingJob], dict[str, Any]] = grade_job, own_pool: bool | None = None,
                   ) -> Iterator[tuple[GradingJob, dict[str, Any]]]:
    """Each job with its record, as jobs finish. A worker process that dies takes every job it
    was running with it (BrokenProcessPool, in our own pool): those are graded again, then alone,
    in a fresh pool, so an innocent neighbour costs only a retry and the submission that kills its
    worker again is graded "could not be graded" with that reason (stored: not retried forever)."""
    own_pool = executor is None if own_pool is None else own_pool  # ours: replaced when a worker dies
    pool = executor or default_executor(min(options.jobs, len(pending)), options.worker_memory_mb)
    rounds = [pending]
    suspects: set[str] = set()
    try:
        while rounds:
            batch = rounds.pop(0)
            futures: dict[Future, GradingJob] = {pool.submit(work, job): job for job in batch}
            lost: list[GradingJob] = []
            broken = False
            for future in _progress(as_completed(futures), len(futures), name, options.progress):
                job = futures[future]
                try:
                    yield job, future.result()
                except SandboxFault:
                    raise  # the sandbox, not the submission: stop before anything more is graded
                except BrokenProcessPool as error:
                    broken = True
                    if not own_pool:  # not ours to replace: the job is retried by the next run
                        yield job, _failed_record(job, error)
                    elif job.submission in suspects:
                        yield job, _worker_killer_record(job)
                    else:
                        lost.append(job)
                except Exception as error:  # noqa: BLE001 - one lost worker must not stop the batch
                    yield job, _failed_record(job, error)
            if broken and own_pool:
                pool.shutdown(wait=True, cancel_futures=True)
                pool = default_executor(1 if lost or suspects else min(options.jobs, len(pending)),
                                        options.worker_memory_mb)
            suspects.update(job.submission for job in lost)
            rounds += [[job] for job in lost]
    finally:
        if own_pool:
            pool.shutdown(wait=True, cancel_futures=True)


def _not_graded_record(assignment: str, name: str, sha256: str) -> dict[str, Any]:
    """A row for a submission the store has seen but holds no grade for (its grading failed)."""
    return {"assignment": assignment, "submission": name, "filename": name, "sha256": sha256, "status": FAILED,
            "message": "not graded: the last `autograder grade` could not grade it; run it again",
            "questions": [], "cells": [], "restarts": 0, "peak_memory_mb": None, "seconds": 0.0}


def _worker_killer_record(job: GradingJob) -> dict[str, Any]:
    record = _failed_record(job, RuntimeError("the grading worker died twice while grading it, alone the "
                                              "second time"))
    record["status"], record["message"] = INVALID, record["message"].removesuffix("; run again")
    return record


def _progress(iterable: Any, total: int, name: str, enabled: bool) -> Any:
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=f"grading {name}", unit="nb", file=sys.stderr, dynamic_ncols=True)


def publish_leaderboard(assignment: str, material: Material, store: Store, out: Path,
                        records: list[dict[str, Any]] | None = None, top_k: int | None = None,
                        pseudonyms: bool = False, accept: Sequence[str] = (),
                        reject: Sequence[str] = ()) -> Leaderboard:
    """Rank everything the store holds for the assignment; write the leaderboard, and the grade
    sheet (with the bonus column) for `records`, or for every stored submission. `accept`/`reject`:
    the TA's decisions on possible copies, added to those in OUT/review.json."""
    # Only grades this grading code made: a fixed grader never ranks what a broken one stored.
    stored, current = store.latest(assignment), grader_code_digest()
    latest = [(record, first) for record, first in stored if record.get("grader_code") == current]
    stale = sorted(record["submission"] for record, _ in stored if record.get("grader_code") != current)
    if stale and records is None:
        raise CourseError(f"{len(stale)} stored grade(s) were made by an older version of the grader "
                          f"({', '.join(stale[:5])}{' ...' if len(stale) > 5 else ''}): run `autograder grade` "
                          "on the class again, then the leaderboard")
    board = build_leaderboard(assignment, latest, material.settings, top_k, pseudonyms,
                              stub=material.home_files.get(f"{assignment}.ipynb"), review=read_review(out),
                              accept=accept, reject=reject)
    by_name = {entry.name: entry for entry in board.entries}
    if records is None:  # every submission the store has seen, graded or not
        records = [record for record, _ in latest] + [
            _not_graded_record(assignment, name, sha256) for name, sha256 in store.ungraded(assignment)]
    bonus = {r["submission"]: by_name[r["submission"]].bonus for r in records if r["submission"] in by_name}
    entries = {r["submission"]: gradescope_entries(by_name[r["submission"]]) for r in records
               if r["submission"] in by_name}
    write_reports(assignment, records, out, {"bonus": bonus}, entries)
    write_leaderboard(board, out)
    return board


def write_reports(assignment: str, records: list[dict[str, Any]], out: Path,
                  extra_columns: dict[str, dict[str, float]] | None = None,
                  leaderboards: dict[str, list[dict[str, Any]]] | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_grades_csv(records, out / "final_grades.csv", extra_columns)
    for record in records:
        stem = file_stem(record["submission"])
        write_gradescope(record, out / "results" / f"{stem}.json", (leaderboards or {}).get(record["submission"]))
        write_feedback(record, out / "feedback", stem)
    if records:
        write_summary(assignment, records, out)
