"""Reading totals out of a stored record (one definition used by every report)."""

from __future__ import annotations

from typing import Any


def total(record: dict[str, Any]) -> float:
    return sum(q["score"] for q in record["questions"])


def possible(record: dict[str, Any]) -> float:
    return sum(q["max_score"] for q in record["questions"])


def percent(record: dict[str, Any]) -> float:
    return round(total(record) / possible(record), 4) if possible(record) else 0.0


def status_text(record: dict[str, Any]) -> str:
    """Otter's grading_status: "Completed", or what went wrong."""
    return "Completed" if record["status"] == "graded" else str(record["message"])


def fmt(points: float) -> str:
    return f"{points:g}"
