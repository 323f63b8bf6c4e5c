"""results.json in Gradescope's autograder format (one per submission).

Outputs carry what a submission wrote (error messages, check names): they are declared plain text,
so Gradescope escapes them instead of reading them as HTML or Markdown.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from autograder.reports.feedback import case_lines
from autograder.reports.scores import total

TEXT = "text"  # Gradescope's output_format that shows a string as it is


def gradescope_results(record: dict[str, Any], leaderboard: list[dict[str, Any]] | None = None) -> dict:
    tests = []
    for question in record["questions"]:
        tests.append({
            "name": question["name"],
            "score": question["score"],
            "max_score": question["max_score"],
            "visibility": "visible",
            "output": "\n".join(case_lines(question)),
            "output_format": TEXT,
        })
    result: dict[str, Any] = {
        "score": total(record),
        "execution_time": round(record.get("seconds", 0)),
        "output": record["message"] or "Graded by running the notebook top to bottom in a fresh kernel.",
        "output_format": TEXT,
        "tests": tests,
    }
    if leaderboard:
        result["leaderboard"] = leaderboard
    return result


def write_gradescope(record: dict[str, Any], path: Path, leaderboard: list[dict[str, Any]] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(gradescope_results(record, leaderboard), indent=2), encoding="utf-8")
