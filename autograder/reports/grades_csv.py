"""final_grades.csv in exactly `otter grade`'s layout, so TAs' scripts keep working:
columns file, <questions, sorted>, total_points_earned, percent_correct, grading_status; first row
"points-per-question"; then one row per submission, sorted by file. Text from records (file names,
error messages) never reaches a spreadsheet as a formula."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from autograder.reports.escape import csv_cell
from autograder.reports.scores import percent, possible, status_text, total

POINTS_ROW = "points-per-question"


def write_grades_csv(records: list[dict[str, Any]], path: Path,
                     extra_columns: dict[str, dict[str, float]] | None = None) -> None:
    """`extra_columns` (name -> submission -> value) go after the questions, e.g. a bonus."""
    extra_columns = extra_columns or {}
    points = {q["name"]: q["max_score"] for r in records for q in r["questions"]}
    questions = sorted(points)
    header = ["file", *questions, *extra_columns, "total_points_earned", "percent_correct", "grading_status"]
    points_row = [POINTS_ROW, *(points[q] for q in questions), *("" for _ in extra_columns),
                  sum(points.values()), 1, "--"]
    rows: list[list[Any]] = []
    for record in sorted(records, key=lambda r: r["submission"]):
        by_name = {q["name"]: q["score"] for q in record["questions"]}
        extras = [values.get(record["submission"], 0) for values in extra_columns.values()]
        earned = total(record) + sum(extras)
        rows.append([record["submission"], *(by_name.get(q, 0) for q in questions), *extras, earned,
                     round(earned / possible(record), 4) if possible(record) else percent(record),
                     status_text(record)])
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([csv_cell(cell) for cell in header])
        writer.writerow(points_row)  # ours alone; its "--" is otter's
        writer.writerows([csv_cell(cell) for cell in row] for row in rows)
