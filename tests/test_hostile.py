"""Hostile and broken submissions (shared/notes/threats.md), executed for real in one batch.

Every case must end with a correct, explained grade for that submission and no effect on any other
submission, the grader, the host or the stored results.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest

from autograder.course import Course
from autograder.grading.batch import BatchOptions, grade_batch
from autograder.sandbox.limits import Limits
from autograder.store import Store
from tests.probe import assert_bombs_contained

FIXTURES = Path(__file__).resolve().parent / "fixtures"
HW1 = "hw1_manual_mlp"
LIMITS = Limits(timeout=300, cell_timeout=10, memory_mb=2500, pids=96, output_kb=256, disk_mb=128)
WEIRD_NAME = "-rf student \u00fc 'x';$(touch pwned) `id`.ipynb"
PICKLE_MARKER = Path("/tmp/autograder-pwned-by-pickle")


def _class_zip(path: Path, reference: bytes) -> None:
    """An LMS-style export with a traversal name, an absolute name, a symlink and a zip bomb."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("alice/hw1_manual_mlp.ipynb", reference)
        archive.writestr("../../escaped.ipynb", reference)
        archive.writestr("/abs/olute.ipynb", reference)
        link = zipfile.ZipInfo("mallory/hw1_manual_mlp.ipynb")
        link.external_attr = (0o120777 << 16)
        archive.writestr(link, "/work/main/reference/hw1_manual_mlp/hw1_manual_mlp.ipynb")
        archive.writestr("bomb/hw1_manual_mlp.ipynb", b"0" * (60 * 1024 * 1024))
        archive.writestr("submission_metadata.yml", "alice: 1\n")


@pytest.fixture(scope="session")
def hostile(built_course: Course, engine_pool: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("hostile")
    subs = work / "submissions"
    shutil.copytree(FIXTURES / "hw1", subs)
    shutil.copytree(FIXTURES / "malformed", subs / "malformed")
    reference = (built_course.root / "reference" / HW1 / "submissions" / "reference.ipynb").read_bytes()
    (subs / WEIRD_NAME).write_bytes(reference)
    (subs / "twice_a.ipynb").write_bytes(reference)
    (subs / "twice_b.ipynb").write_bytes(reference)
    (subs / "huge.ipynb").write_bytes(b'{"cells": [], "x": "' + b"a" * (60 * 1024 * 1024) + b'"}')
    _class_zip(subs / "class_export.zip", reference)
    PICKLE_MARKER.unlink(missing_ok=True)
    out = work / "out"
    store = Store(work / "results.sqlite")
    options = BatchOptions(limits=LIMITS, jobs=2, progress=False)
    outcome = grade_batch(built_course.assignment(HW1), [subs], out, store, options, executor=engine_pool)
    by_name = {r["submission"].split("/", 1)[1]: r for r in outcome.records}
    return {"records": by_name, "out": out, "work": work, "outcome": outcome, "store": store}


def _without_timing(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_timing(v) for k, v in value.items() if k not in ("seconds", "peak_memory_mb")}
    if isinstance(value, list):
        return [_without_timing(v) for v in value]
    return value


def _total(record: dict[str, Any]) -> float:
    return sum(q["score"] for q in record["questions"])


def _scores(record: dict[str, Any]) -> dict[str, float]:
    return {q["name"]: q["score"] for q in record["questions"]}


def _case(record: dict[str, Any], question: str, name: str) -> dict[str, Any]:
    cases = next(q["cases"] for q in record["questions"] if q["name"] == question)
    return next(c for c in cases if c["name"] == name)


def test_reference_control_full_marks_and_duplicates_agree(hostile: dict) -> None:
    records = hostile["records"]
    assert _total(records["twice_a.ipynb"]) == 26
    a, b = (_without_timing(records[name] | {"submission": "", "filename": ""})
            for name in ("twice_a.ipynb", "twice_b.ipynb"))
    assert a == b


def test_reading_secrets_finds_nothing_and_network_is_off(built_course: Course, tmp_path: Path) -> None:
    """Class 1 (and 12): the probe walks the filesystem, /proc and the environment from inside."""
    from autograder.grading.material import Material
    from autograder.sandbox.local import LocalSandbox
    from tests.probe import run_probe

    material = Material.load(built_course.assignment(HW1))
    with LocalSandbox(LIMITS, material.home_files) as sandbox:
        found = run_probe(sandbox, LIMITS)
    leaked, network, visible = found["LEAKED"], found["NETWORK"], found["VISIBLE_ROOT"]
    uid, env, wrote = found["UID"], found["ENV_KEYS"], found["WROTE_OUTSIDE"]
    assert leaked == [], f"the notebook could read secrets at {leaked}"
    assert network.startswith("blocked"), network
    assert uid not in (0, os.getuid()) and uid >= 61000
    assert "reference" not in visible and wrote == []
    assert not any(key.startswith("AUTOGRADER_COURSE") for key in env)
    assert not Path("/work/escape.txt").exists()


def test_patching_numpy_torch_and_otter_changes_nothing(hostile: dict, built_course: Course) -> None:
    """Class 2: the same wrong answers with and without patched comparisons get the same grade."""
    patched = hostile["records"]["patches_checks.ipynb"]
    assert patched["status"] == "graded"
    # Without the patches this notebook is the bundled naive-sigmoid sample: q1 = 2, q2 = 5.
    assert _scores(patched)["q1"] == 2 and _scores(patched)["q2"] == 5 and _total(patched) == 22


def test_objects_that_equal_anything_get_no_credit(hostile: dict) -> None:
    """Class 3: a return value with a rigged __eq__/__bool__/__float__ is not data; it fails."""
    record = hostile["records"]["rigged_objects.ipynb"]
    case = _case(record, "q1", "test_q1_sigmoid_random")
    assert not case["passed"] and "grader accepts numbers" in case["message"]
    assert _scores(record)["q1"] < 5


def test_forged_results_and_a_dead_kernel_do_not_make_a_grade(hostile: dict) -> None:
    """Classes 4-5: printed scores, written results.json, fake bridge replies, then os._exit."""
    record = hostile["records"]["forges_results.ipynb"]
    assert record["status"] == "graded" and _total(record) == 0


def test_pickles_are_never_loaded(hostile: dict) -> None:
    """Class 6: bytes, torch.save payloads and object arrays come back as errors, never unpickled."""
    record = hostile["records"]["pickle_payload.ipynb"]
    for name in ("test_q1_sigmoid_random", "test_q1_tanh_relu_leaky_random"):
        assert not _case(record, "q1", name)["passed"]
    assert not PICKLE_MARKER.exists()


def test_codec_refuses_pickled_arrays() -> None:
    import base64
    import io

    import numpy as np

    from autograder.execution import codec

    buffer = io.BytesIO()
    np.save(buffer, np.array([PICKLE_MARKER, 1], dtype=object), allow_pickle=True)
    forged = {"__ndarray__": base64.b64encode(buffer.getvalue()).decode()}
    with pytest.raises(ValueError, match="dtype object"):
        codec.decode(forged)
    with pytest.raises(codec.NotPlainData):
        codec.encode(b"bytes are not data")


def test_hard_coded_lecture_numbers_only_pass_the_public_checks(built_course: Course, engine_pool: Any,
                                                                 tmp_path: Path) -> None:
    """Class 7: hidden checks draw fresh inputs, so the lecture's KL constant earns public points only."""
    outcome = grade_batch(built_course.assignment("hw3_losses"), [FIXTURES / "hw3" / "hardcoded_kl.ipynb"],
                          tmp_path / "out", Store(tmp_path / "db.sqlite"), BatchOptions(limits=LIMITS, progress=False),
                          executor=engine_pool)
    q2 = next(q for q in outcome.records[0]["questions"] if q["name"] == "q2")
    public_points = sum(c["max_points"] for c in q2["cases"] if not c["hidden"])
    hidden = [c for c in q2["cases"] if c["hidden"]]
    assert hidden and not any(c["passed"] for c in hidden)
    assert 0 < q2["score"] <= public_points < q2["max_score"]


def test_hanging_cells_cost_only_themselves(hostile: dict) -> None:
    """Class 14: a SIGINT-proof busy loop, a long sleep and input() each stop; the rest is graded."""
    record = hostile["records"]["hangs.ipynb"]
    statuses = [c["status"] for c in record["cells"]]
    assert statuses.count("timeout") >= 2 and "error" in statuses
    assert _total(record) == 26


def test_killing_the_kernel_costs_only_that_cell(hostile: dict) -> None:
    """Class 15: os._exit and a segfault mid-notebook; a fresh kernel replays the good cells."""
    record = hostile["records"]["kills_kernel.ipynb"]
    assert record["restarts"] >= 2 and _total(record) == 26


def test_a_function_that_kills_its_kernel_fails_only_its_checks(hostile: dict) -> None:
    record = hostile["records"]["kills_on_call.ipynb"]
    assert record["status"] == "graded"
    scores = _scores(record)
    # relu kills its kernel: relu's checks and manual_mlp's (which calls relu) fail; the rest pass.
    assert scores["q1"] < 5 and scores["q4"] == 0 and scores["q3"] == 6 and record["restarts"] >= 1


def test_memory_fork_thread_disk_and_output_bombs_are_contained(hostile: dict) -> None:
    """Class 16: each bomb hits its limit; the notebook's answers still get full marks."""
    assert_bombs_contained(hostile["records"]["resource_bombs.ipynb"], LIMITS.memory_mb)


def test_nothing_outlives_the_sandbox(hostile: dict) -> None:
    """Class 17: a detached process and a double-forked daemon die with the sandbox."""
    assert _total(hostile["records"]["background_process.ipynb"]) == 26
    leftovers = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"10007" in cmdline or b"10008" in cmdline:
            leftovers.append(cmdline)
    assert leftovers == []


MALFORMED = {
    "malformed/not_json.ipynb": "not valid notebook JSON",
    "malformed/truncated.ipynb": "not valid notebook JSON",
    "malformed/json_not_notebook.ipynb": "not a Jupyter notebook",
    "malformed/empty.ipynb": "empty",
    "malformed/latin1.ipynb": "not UTF-8",
    "malformed/r_kernel.ipynb": "R kernel",
    "huge.ipynb": "over the 50 MB limit",
}


@pytest.mark.parametrize(("name", "message"), sorted(MALFORMED.items()))
def test_malformed_notebooks_get_a_clear_message(hostile: dict, name: str, message: str) -> None:
    """Class 18: each gets status invalid, zero points, and a message naming the file and the fix."""
    record = hostile["records"][name]
    assert record["status"] == "invalid" and _total(record) == 0
    assert message in record["message"] and Path(name).name in record["message"]
    assert "submit" in record["message"]


def test_other_file_types_in_a_folder_are_not_graded_but_explicit_ones_are_refused(
    built_course: Course, engine_pool: Any, tmp_path: Path
) -> None:
    outcome = grade_batch(built_course.assignment(HW1),
                          [FIXTURES / "malformed" / "solution.py", FIXTURES / "malformed" / "solution.pdf"],
                          tmp_path / "out", Store(tmp_path / "db.sqlite"), BatchOptions(limits=LIMITS, progress=False),
                          executor=engine_pool)
    assert [r["status"] for r in outcome.records] == ["invalid", "invalid"]
    assert all("expected a Jupyter notebook (.ipynb)" in r["message"] for r in outcome.records)


def test_old_notebook_format_is_converted_and_graded(hostile: dict) -> None:
    record = hostile["records"]["malformed/nbformat3.ipynb"]
    assert record["status"] == "graded" and _total(record) == 26


def test_deleted_merged_reordered_cells_and_edited_metadata_are_graded(hostile: dict) -> None:
    """Class 19: grading goes by the names the notebook defines, not by cell markers or tags."""
    assert _total(hostile["records"]["restructured.ipynb"]) == 26


def test_class_zip_is_read_safely(hostile: dict) -> None:
    """Class 20: traversal and absolute names stay labels, symlinks and bombs are refused."""
    records = hostile["records"]
    assert _total(records["class_export.zip/alice/hw1_manual_mlp.ipynb"]) == 26
    assert _total(records["class_export.zip/escaped.ipynb"]) == 26
    assert _total(records["class_export.zip/abs/olute.ipynb"]) == 26
    assert "symbolic link" in records["class_export.zip/mallory/hw1_manual_mlp.ipynb"]["message"]
    assert "too large" in records["class_export.zip/bomb/hw1_manual_mlp.ipynb"]["message"]
    work: Path = hostile["work"]
    assert not (work / "escaped.ipynb").exists() and not Path("/abs").exists()
    assert not any(p.name == "escaped.ipynb" for p in work.parent.rglob("escaped.ipynb"))


def test_strange_file_names_are_graded_and_reported_safely(hostile: dict) -> None:
    """Class 21: spaces, unicode, quotes, shell syntax and a leading dash."""
    assert _total(hostile["records"][WEIRD_NAME]) == 26
    out: Path = hostile["out"]
    assert not list(Path.cwd().glob("pwned")) and not (out / "pwned").exists()
    names = [p.name for p in (out / "feedback").iterdir()]
    assert all(not n.startswith("-") and "$" not in n and "'" not in n and " " not in n for n in names)
    rows = (out / "final_grades.csv").read_text(encoding="utf-8")
    assert "\u00fc" in rows


def test_batch_survives_and_reports_every_submission(hostile: dict) -> None:
    outcome = hostile["outcome"]
    records = hostile["records"]
    assert len(records) == len(outcome.records) >= 25
    assert all(r["status"] in ("graded", "invalid") for r in outcome.records), [
        (r["submission"], r["message"]) for r in outcome.records if r["status"] == "failed"]
    summary = (hostile["out"] / "summary.md").read_text()
    assert "Submissions that need a look" in summary
    stored = hostile["store"].records(HW1)
    assert len(stored) == len({r["sha256"] for r in outcome.records if r["status"] != "failed"})
    results = list((hostile["out"] / "results").glob("*.json"))
    assert len(results) == len(outcome.records)
    assert all("score" in json.loads(p.read_text()) for p in results)
