"""`dist/<hw>/<hw>-gradescope.zip`: an autograder zip in Gradescope's format that grades with this engine.

Gradescope (and `otter grade`, whose image template runs the same two scripts) unpacks it into
/autograder/source, runs `setup.sh` once as root to make the image, then for each submission runs
`run_autograder`, which grades /autograder/submission/*.ipynb and writes
/autograder/results/results.json (with leaderboard entries when the assignment has a leaderboard).

The zip is grader material, like Otter's autograder zip: it holds the hidden tests. Inside:
    setup.sh, run_autograder        Gradescope's two entry points
    requirements.txt                the locked environment (exported from uv.lock, with hashes)
    package/autograder/             this package's source (put on the venv's path by setup.sh)
    material/tests/ student/ grading.toml, autograder.json   what grading the assignment needs
    environment.yml, otter_config.json, run_otter.py, tests/   only so that Otter's image template
                                    (which ADDs these names) can build from the zip

The grader and the checks run in run_autograder's (root) process. Where the local sandbox works
(bubblewrap and a writable cgroup hierarchy), the kernel runs in it as usual; in an unprivileged
container, as on Gradescope, it runs as `nobody` after the grader material has been made unreadable
to it, and everything nobody left is removed after each kernel (`autograder.sandbox.unprivileged`),
with the container's own limits (a memory limit or network cut-off of our own needs
privileges the container does not have).

    python -m autograder.authoring.gradescope_zip run SOURCE SUBMISSION_DIR RESULTS_JSON
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path
from typing import Any

from autograder.course import Assignment, CourseError

ZIP_DATE = (1980, 1, 1, 0, 0, 0)
PACKAGE = Path(__file__).resolve().parents[1]
REPO = PACKAGE.parent
UV_VERSION = "0.13.9"

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root, in /autograder/source, when it builds the autograder image.
# It installs the course's locked environment (requirements.txt, exported from uv.lock with hashes)
# into /autograder/venv with uv, and puts the autograder package (package/) on its path.
set -euo pipefail
cd "$(dirname "$0")"
SOURCE=$(pwd)
if ! python3 -m venv /autograder/uv-tool >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-pip >/dev/null
    python3 -m venv /autograder/uv-tool
fi
/autograder/uv-tool/bin/pip install --quiet --disable-pip-version-check "uv=={uv_version}"
UV=/autograder/uv-tool/bin/uv
export UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
# Python 3.11 as in uv.lock: the system's if it has one, else uv fetches a build (Gradescope has
# internet access while it runs setup.sh).
"$UV" venv --quiet --python 3.11 /autograder/venv
"$UV" pip install --quiet --python /autograder/venv/bin/python --require-hashes --no-deps -r requirements.txt
SITE=$(/autograder/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$SOURCE/package" > "$SITE/autograder-source.pth"
# The local sandbox (bubblewrap + cgroups) where the container allows it; otherwise run_autograder
# runs the kernel as nobody.
if [ -w /sys/fs/cgroup ] || [ -w /sys/fs/cgroup/memory ]; then
    command -v bwrap >/dev/null || { apt-get update -qq && apt-get install -y -qq bubblewrap >/dev/null; } || true
fi
/autograder/venv/bin/python -c 'import autograder, torch, ipykernel; print("autograder environment ready")'
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for each submission: grade /autograder/submission/*.ipynb into
# /autograder/results/results.json.
exec /autograder/venv/bin/python -m autograder.authoring.gradescope_zip run \\
    /autograder/source /autograder/submission /autograder/results/results.json
"""

RUN_OTTER = '''"""Not Otter: this zip grades with the course's own engine. Kept because Otter's image template
copies a file of this name; `otter grade` runs /autograder/run_autograder, which grades."""
import subprocess
import sys

sys.exit(subprocess.call(["/autograder/run_autograder"]))
'''

ENVIRONMENT_YML = ("# Not used: setup.sh installs requirements.txt (exported from uv.lock) with uv.\n"
                   "# Present because Otter's image template copies a file of this name.\n")


def zip_path(assignment: Assignment) -> Path:
    return assignment.dist_dir / f"{assignment.name}-gradescope.zip"


def requirements_txt() -> bytes:
    """The locked environment, exported from the checkout's uv.lock (with hashes)."""
    uv = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
    if uv is None or not (REPO / "uv.lock").is_file():
        raise CourseError("the Gradescope zip needs this checkout's uv.lock and uv (pip install uv)")
    done = subprocess.run([uv, "export", "--frozen", "--no-dev", "--no-emit-project", "--quiet"], cwd=REPO,
                          capture_output=True, timeout=120)
    if done.returncode != 0:
        raise CourseError(f"uv export failed: {done.stderr.decode(errors='replace')[-2000:]}")
    # uv's header names the command that made the file; the lines after it are the content.
    return done.stdout


def package_files() -> dict[str, bytes]:
    return {f"package/autograder/{p.relative_to(PACKAGE)}": p.read_bytes()
            for p in sorted(PACKAGE.rglob("*.py")) if "__pycache__" not in p.parts}


def gradescope_zip_files(assignment: Assignment) -> dict[str, bytes]:
    tests = {p.name: p.read_bytes() for p in sorted(assignment.tests_dir.glob("*.py"))}
    if not tests:
        raise CourseError(f"no tests in {assignment.tests_dir}: build {assignment.name} first")
    files: dict[str, bytes] = {
        "setup.sh": SETUP_SH.replace("{uv_version}", UV_VERSION).encode(),
        "run_autograder": RUN_AUTOGRADER.encode(),
        "requirements.txt": requirements_txt(),
        "environment.yml": ENVIRONMENT_YML.encode(),
        "otter_config.json": b"{}\n",
        "run_otter.py": RUN_OTTER.encode(),
        "material/autograder.json": json.dumps({"assignment": assignment.name,
                                                "notebook": assignment.student_notebook.name}).encode(),
    }
    for name, content in tests.items():
        files[f"material/tests/{name}"] = content
        files[f"tests/{name}"] = content  # where Otter's template expects them
    for path in sorted(assignment.student_dir.rglob("*")):
        if path.is_file():
            files[f"material/student/{path.relative_to(assignment.student_dir)}"] = path.read_bytes()
    if assignment.grading_settings.is_file():
        files["material/grading.toml"] = assignment.grading_settings.read_bytes()
    files.update(package_files())
    return files


def write_gradescope_zip(assignment: Assignment) -> Path:
    """Write dist/<hw>/<hw>-gradescope.zip; its bytes depend only on its content."""
    target = zip_path(assignment)
    files = gradescope_zip_files(assignment)
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            executable = name in ("setup.sh", "run_autograder")
            info.external_attr = (0o100755 if executable else 0o100644) << 16
            archive.writestr(info, files[name])
    return target


# -- inside Gradescope's container -------------------------------------------------------------------


def _pick_notebook(submission: Path, expected: str) -> Path | None:
    notebooks = sorted(p for p in submission.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    for path in notebooks:
        if path.name == expected:
            return path
    return notebooks[0] if len(notebooks) == 1 else None


def _otter_pickle(record: dict[str, Any], path: Path) -> None:
    """`otter grade` reads results.pkl (a dill of Otter's GradingResults): the same scores."""
    import dill
    from otter.test_files import GradingResults

    payload = {"test_file_results": [
        {"filename": f"tests/{q['name']}.py", "points": q["max_score"], "test_case_results": [
            {"test_case": {"name": c["name"], "code": "", "hidden": c["hidden"], "points": c["max_points"],
                           "success_message": None, "failure_message": None},
             "error": c.get("message") or "", "passed": bool(c["passed"])} for c in q["cases"]]}
        for q in record["questions"]]}
    with open(path, "wb") as out:
        dill.dump(GradingResults.from_ottr_json(json.dumps(payload)), out)


def run(source: Path, submission: Path, results: Path) -> int:
    """Grade the one notebook in `submission` with the material in `source/material`."""
    from autograder.grading.job import GradingJob, grade_job
    from autograder.grading.material import Material
    from autograder.reports.gradescope import write_gradescope
    from autograder.reports.leaderboard import build_leaderboard, gradescope_entries
    from autograder.sandbox.factory import UNPRIVILEGED
    from autograder.sandbox.limits import Limits
    from autograder.sandbox.local import sandbox_problem

    material_dir = source / "material"
    meta = json.loads((material_dir / "autograder.json").read_text(encoding="utf-8"))
    settings_file = material_dir / "grading.toml"
    settings = tomllib.loads(settings_file.read_text(encoding="utf-8")) if settings_file.is_file() else {}
    student = material_dir / "student"
    material = Material(
        meta["assignment"],
        {p.name: p.read_text(encoding="utf-8") for p in sorted((material_dir / "tests").glob("*.py"))},
        {str(p.relative_to(student)): p.read_bytes() for p in sorted(student.rglob("*")) if p.is_file()},
        settings)
    notebook = _pick_notebook(submission, meta["notebook"])
    data, error = b"", None
    if notebook is None:
        error = (f"expected one notebook ({meta['notebook']}) in the submission: submit your executed "
                 f"{meta['notebook']}")
    else:
        data = notebook.read_bytes()
    sandboxed = sandbox_problem() is None
    # Root without bubblewrap (Gradescope's container): the kernel as nobody, swept after each run.
    backend = {"kind": UNPRIVILEGED} if os.geteuid() == 0 and not sandboxed else None
    if os.geteuid() == 0:
        # Everything the grader holds is now in memory: nothing of it stays readable to the kernel.
        for path in (source, submission, results.parent):
            path.mkdir(parents=True, exist_ok=True)
            os.chmod(path, 0o700)
    data_dir = None
    if material.integrity:
        raw = Path(os.environ.get("AUTOGRADER_DATA", source / "data")) / "MNIST" / "raw"
        data_dir = str(raw) if raw.is_dir() else None
        if data_dir is not None and os.geteuid() == 0:
            with contextlib.suppress(OSError):  # a read-only mount: then its own permissions hold
                os.chmod(raw, 0o700)  # the real test split: the kernel (nobody) sees only stand-ins
        if data_dir is None and error is None:
            error = f"the grader has no MNIST files in {raw}: tell the course staff"
    limits = Limits(**settings.get("limits", {})).to_dict()
    job = GradingJob(material.assignment, notebook.name if notebook else "submission",
                     notebook.name if notebook else "submission.ipynb", data, material.tests, material.home_files,
                     limits, material.version(limits), read_error=error, sandboxed=sandboxed, backend=backend,
                     integrity=material.integrity, data_dir=data_dir)
    record = grade_job(job)
    leaderboard = None
    if material.integrity and record["status"] == "graded":
        board = build_leaderboard(material.assignment, [(record, time.time())], settings)
        leaderboard = gradescope_entries(board.entries[0]) if board.entries else None
    write_gradescope(record, results, leaderboard)
    if (results.parent / "results.pkl").exists():  # `otter grade` put it there to be filled
        _otter_pickle(record, results.parent / "results.pkl")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 4 or args[0] != "run":
        print(__doc__, file=sys.stderr)
        return 2
    return run(Path(args[1]), Path(args[2]), Path(args[3]))


if __name__ == "__main__":
    sys.exit(main())
