"""Per-student feedback, as Markdown and as a self-contained HTML page.

Students see, per question, which checks failed and why, with the error their own code raised.
Hidden checks are numbered, not named, and their messages have had compared values removed (see
checks.runner.student_message): students learn what to fix, not the expected answers. Every string
from the record enters the Markdown through reports.escape.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from autograder.reports.escape import code_span, fenced, inline, markdown_to_html, visible
from autograder.reports.scores import fmt, percent, possible, total

STYLE = """
body{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;color:#222;line-height:1.45}
table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}
th{background:#f3f3f3}pre{background:#f6f6f6;padding:.6rem;overflow-x:auto;font-size:.85rem}
code{background:#f3f3f3;padding:0 .2rem}h1{font-size:1.5rem}h2{margin-top:2rem}
"""


def case_label(case: dict[str, Any], index: int, markdown: bool = False) -> str:
    """How a check is named to students: as plain text (Gradescope's output) or as Markdown."""
    if case["hidden"]:
        return f"hidden check {index}"
    return f"public check {code_span(case['name'])}" if markdown else f"public check `{case['name']}`"


def case_lines(question: dict[str, Any]) -> list[str]:
    lines = []
    hidden_index = 0
    for case in question["cases"]:
        hidden_index += case["hidden"]
        mark = "passed" if case["passed"] else "FAILED"
        line = f"{mark}: {case_label(case, hidden_index)} ({fmt(case['points'])}/{fmt(case['max_points'])})"
        if not case["passed"] and case["message"]:
            line += f": {case['message']}"
        lines.append(line)
    return lines


def feedback_markdown(record: dict[str, Any]) -> str:
    title = f"# {inline(record['assignment'])}: feedback for {inline(record['submission'])}"
    out = [title, ""]
    if record["status"] == "graded":
        out.append(f"**Score: {fmt(total(record))} / {fmt(possible(record))}** "
                   f"({100 * percent(record):.1f} %)")
    else:
        out += ["**This submission could not be graded.**", "", f"> {inline(record['message'])}", "",
                f"Score: 0 / {fmt(possible(record))}"]
    out += ["", "| Question | Points | Checks passed |", "|---|---|---|"]
    for question in record["questions"]:
        passed = sum(c["passed"] for c in question["cases"])
        out.append(f"| {inline(question['name'])} | {fmt(question['score'])} / {fmt(question['max_score'])} | "
                   f"{passed} / {len(question['cases'])} |")
    failing = [q for q in record["questions"] if q["score"] < q["max_score"]]
    if failing and record["status"] == "graded":
        out += ["", "## What to fix", "",
                "Public checks are the ones `grader.check` runs in your notebook; hidden checks call your "
                "functions on fresh random inputs and edge cases. Fix the public ones first."]
        for question in failing:
            out += ["", f"### {inline(question['name'])} ({fmt(question['score'])} / {fmt(question['max_score'])})", ""]
            hidden_index = 0
            for case in question["cases"]:
                hidden_index += case["hidden"]
                if case["passed"]:
                    continue
                out.append(f"- {case_label(case, hidden_index, markdown=True)}: {inline(case['message'])}")
                if case.get("student_traceback"):
                    tail = str(case["student_traceback"]).strip().splitlines()[-12:]
                    out += ["", *fenced("\n".join(tail), indent="  ")]
    out += _run_section(record)
    return "\n".join(out) + "\n"


def _run_section(record: dict[str, Any]) -> list[str]:
    cells = record.get("cells") or []
    if not cells:
        return []
    out = ["", "## How your notebook ran", ""]
    ran = sum(c["seconds"] for c in cells)
    summary = f"Your notebook ran top to bottom in a fresh kernel in {ran:.1f} s"
    if record.get("peak_memory_mb"):
        summary += f", peak memory {record['peak_memory_mb']:.0f} MB"
    out.append(summary + ".")
    if record.get("restarts"):
        out.append(f"The kernel was lost and restarted {int(record['restarts'])} time(s): the cells that had worked "
                   "were run again and grading went on.")
    problems = [c for c in cells if c["status"] != "ok"]
    if problems:
        out += ["", "| Code cell | What happened |", "|---|---|"]
        for cell in problems:
            what = cell["error"] or cell["status"]
            out.append(f"| {cell['index'] + 1} | {inline(cell['status'])}: {inline(what)} |")
    slow = sorted(cells, key=lambda c: c["seconds"], reverse=True)[:3]
    if slow and slow[0]["seconds"] > 1:
        out += ["", "Slowest cells: " + ", ".join(f"cell {c['index'] + 1} ({c['seconds']:.1f} s)" for c in slow)]
    return out


def page(title: str, markdown_text: str) -> str:
    """`markdown_text` must hold record strings only as reports.escape made them."""
    body = markdown_to_html(markdown_text)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(visible(title))}</title>"
            f"<style>{STYLE}</style></head><body>{body}</body></html>\n")


def write_feedback(record: dict[str, Any], directory: Path, stem: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    text = feedback_markdown(record)
    (directory / f"{stem}.md").write_text(text, encoding="utf-8")
    title = f"{record['assignment']}: {record['submission']}"
    (directory / f"{stem}.html").write_text(page(title, text), encoding="utf-8")
