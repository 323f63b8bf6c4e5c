"""After `autograder leaderboard`, the grade sheet still has a row for every submission the store has
seen, whatever happened to it: a job whose grading failed is listed as not graded, never dropped."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path
from typing import Any

from autograder.grading.batch import publish_leaderboard
from autograder.grading.material import Material, grader_code_digest
from autograder.store import Store

HW = "hw4_mnist"
SETTINGS = {"integrity": {"threshold": 0.95}, "leaderboard": {"top_k": 3, "bonus": [3, 2, 1]}}


def _sha(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def _record(name: str, accuracy: float) -> dict[str, Any]:
    question = {"name": "accuracy", "score": 10.0, "max_score": 10.0, "seconds": 0.0, "cases": []}
    return {"assignment": HW, "submission": name, "filename": f"{name}.ipynb", "sha256": _sha(name),
            "grader_version": "v", "grader_code": grader_code_digest(), "status": "graded", "message": None,
            "questions": [question], "cells": [], "restarts": 0, "peak_memory_mb": None, "seconds": 1.0,
            "code_sha256": name, "integrity": {"flags": [], "reproducible": True, "measured_accuracy": accuracy,
                                                "parameters": 1000, "weights_sha256": name}}


def test_every_seen_submission_keeps_its_row_after_the_leaderboard(tmp_path: Path) -> None:
    store = Store(tmp_path / "results.sqlite")
    for name in ("alice", "bob", "lost"):
        store.note_submission(HW, name, _sha(name))
    store.put(_record("alice", 0.98))
    store.put(_record("bob", 0.97))
    publish_leaderboard(HW, Material(HW, {}, {}, SETTINGS), store, tmp_path / "out")
    rows = {row["file"]: row for row in csv.DictReader((tmp_path / "out" / "final_grades.csv").open())}
    assert set(rows) == {"points-per-question", "alice", "bob", "lost"}
    assert rows["lost"]["grading_status"].startswith("not graded")
    assert float(rows["alice"]["bonus"]) == 3 and float(rows["bob"]["bonus"]) == 2
