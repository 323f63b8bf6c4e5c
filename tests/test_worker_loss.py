"""A grading worker that dies costs its neighbours only a retry; the job that kills it again is
"could not be graded" with the reason, and nothing is retried forever. No kernels: the work done
for each job is a stand-in that exits its worker process for one submission."""

from __future__ import annotations

import os
from typing import Any

from autograder.grading.batch import BatchOptions, _grade_pending
from autograder.grading.job import GRADED, INVALID, GradingJob


def kill_the_worker_for_the_killer(job: GradingJob) -> dict[str, Any]:
    if job.submission == "killer":
        os._exit(1)  # what a segfault or the kernel's OOM killer does to a worker process
    return {"submission": job.submission, "status": GRADED, "message": None}


def _job(name: str) -> GradingJob:
    return GradingJob("hw", name, f"{name}.ipynb", b"{}", {}, {}, {}, "v")


def test_a_dying_worker_costs_its_neighbours_a_retry_and_its_killer_a_verdict() -> None:
    names = ["a", "b", "killer", "c", "d"]
    results = dict((job.submission, record) for job, record in _grade_pending(
        [_job(n) for n in names], None, BatchOptions(jobs=2, progress=False), "hw", kill_the_worker_for_the_killer))
    assert sorted(results) == sorted(names)
    assert all(results[n]["status"] == GRADED for n in names if n != "killer"), results
    assert results["killer"]["status"] == INVALID and "died twice" in results["killer"]["message"]
