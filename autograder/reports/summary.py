"""The TA's view of a batch: score distribution (PNG), per-question pass rates, what failed.

Record strings (names, messages, check names) enter the Markdown only through reports.escape."""

from __future__ import annotations

import base64
import statistics
from pathlib import Path
from typing import Any

from autograder.reports.escape import inline, plot_label
from autograder.reports.feedback import page
from autograder.reports.scores import fmt, possible, total


def write_histogram(records: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    totals = [total(r) for r in records]
    top = max((possible(r) for r in records), default=1) or 1
    figure, axes = plt.subplots(figsize=(7, 3.5), dpi=100)
    axes.hist(totals, bins=min(20, max(5, len(set(totals)))), range=(0, top), color="#4c72b0", edgecolor="white")
    axes.set_xlabel(f"points (of {fmt(top)})")
    axes.set_ylabel("submissions")
    axes.set_title(plot_label(title), parse_math=False)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def summary_markdown(assignment: str, records: list[dict[str, Any]], image: str) -> str:
    """`image`: where the histogram is, its file name or a data: URL."""
    graded = [r for r in records if r["status"] == "graded"]
    totals = [total(r) for r in records]
    out = [f"# {inline(assignment)}: grading summary", "",
           f"{len(records)} submissions: {len(graded)} graded, {len(records) - len(graded)} could not be graded."]
    if totals:
        out.append(f"Points: mean {statistics.mean(totals):.2f}, median {statistics.median(totals):g}, "
                   f"min {min(totals):g}, max {max(totals):g} (of {fmt(max(possible(r) for r in records))}).")
    out += ["", f"![score distribution]({image})", "", "## Questions", "",
            "| Question | Points | Full marks | Mean points | Checks failed most |", "|---|---|---|---|---|"]
    names = sorted({q["name"] for r in records for q in r["questions"]})
    for name in names:
        rows = [q for r in graded for q in r["questions"] if q["name"] == name]
        if not rows:
            continue
        full = sum(q["score"] >= q["max_score"] for q in rows)
        failures: dict[str, int] = {}
        for question in rows:
            hidden_index = 0
            for case in question["cases"]:
                hidden_index += case["hidden"]
                if not case["passed"]:
                    label = f"hidden {hidden_index}" if case["hidden"] else case["name"]
                    failures[label] = failures.get(label, 0) + 1
        worst = ", ".join(f"{inline(k)} ({v})" for k, v in sorted(failures.items(), key=lambda kv: -kv[1])[:2]) or "-"
        out.append(f"| {inline(name)} | {fmt(rows[0]['max_score'])} | {100 * full / len(rows):.0f} % | "
                   f"{statistics.mean(q['score'] for q in rows):.2f} | {worst} |")
    problems = [r for r in records if r["status"] != "graded" or any(c["status"] != "ok" for c in r["cells"])]
    if problems:
        out += ["", "## Submissions that need a look", "", "| Submission | Status | What happened |", "|---|---|---|"]
        for record in sorted(problems, key=lambda r: r["submission"]):
            if record["status"] != "graded":
                what = record["message"]
            else:
                bad = [c for c in record["cells"] if c["status"] != "ok"]
                what = "; ".join(f"cell {c['index'] + 1} {c['status']}" for c in bad[:4])
            out.append(f"| {inline(record['submission'])} | {inline(record['status'])} | {inline(str(what)[:300])} |")
    return "\n".join(out) + "\n"


def write_summary(assignment: str, records: list[dict[str, Any]], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    png = directory / "score_distribution.png"
    write_histogram(records, png, f"{assignment}: {len(records)} submissions")
    (directory / "summary.md").write_text(summary_markdown(assignment, records, png.name), encoding="utf-8")
    embedded = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()
    (directory / "summary.html").write_text(page(f"{assignment} summary",
                                                 summary_markdown(assignment, records, embedded)), encoding="utf-8")
    return directory / "summary.md"
