"""What one hw3 submission costs the grader's own memory, honest or hostile, in one run.

Each case is graded in a fresh process (`grade_job`, the worker's entry point) and reports that
process's peak resident memory; the hostile ones return answers near, over and far over the caps
of autograder.execution.codec and kernel.MAX_MESSAGE_BYTES. The printed ratios are over the honest
submission measured in the same run.

    uv run python bench/wall_memory.py
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import nbformat

from autograder.authoring.build import build
from autograder.course import Course
from autograder.grading.job import GradingJob, grade_job
from autograder.grading.material import Material
from autograder.sandbox.limits import Limits

HW3 = "hw3_losses"
CASES = {
    "honest": None,
    "answer_45mb_array (accepted, under the 64 MB cap)": "return np.zeros(45 * 2**20 // 8)",
    "answer_64.5mb_string (read, over the 64 MB cap)": "return 'a' * (129 * 2**19)",
    "answer_300mb_string (dropped by zmq)": "return 'a' * (300 * 2**20)",
    "answer_2m_values (refused in the kernel)": "return [0.5] * 2000000",
}


def _submission(course: Course, body: str | None) -> bytes:
    notebook = nbformat.read(course.assignment(HW3).submissions_dir / "reference.ipynb", as_version=4)
    if body:
        code = "import numpy as np\ndef kl_divergence(p, q):\n    " + body
        notebook.cells.append(nbformat.v4.new_code_cell(code))
    return nbformat.writes(notebook).encode()


def _one(case: str) -> None:
    course = Course(Path(__file__).resolve().parents[1])
    material = Material.load(course.assignment(HW3))
    limits = Limits(cell_timeout=60).to_dict()
    job = GradingJob(HW3, case, "submission.ipynb", _submission(course, CASES[case]), material.tests,
                     material.home_files, limits, material.version(limits))
    record = grade_job(job)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    points = sum(q["score"] for q in record["questions"])
    print(json.dumps({"case": case, "peak_mb": round(peak_mb), "points": points, "status": record["status"]}))


def main() -> None:
    if len(sys.argv) > 1:
        return _one(sys.argv[1])
    course = Course(Path(__file__).resolve().parents[1])
    if not course.assignment(HW3).tests_dir.is_dir():
        build(course.assignment(HW3), run_tests=False)
    results = []
    for case in CASES:
        done = subprocess.run([sys.executable, __file__, case], capture_output=True, text=True, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    honest = results[0]["peak_mb"]
    print(f"{'case':55} {'grader peak RSS':>16} {'over honest':>12} {'points':>7}")
    for result in results:
        print(f"{result['case']:55} {result['peak_mb']:>13} MB {result['peak_mb'] / honest:>11.2f}x "
              f"{result['points']:>7g}")


if __name__ == "__main__":
    main()
