"""The bonus leaderboard of a trained-model assignment, built from the result store.

Eligible: the grader measured at least the threshold, the weights reproduce under the student's
seed, the test split played no part, the model is an MLP, within budget, and the reported accuracy
is the real one. Ranked by measured accuracy; ties go to fewer parameters, then to the earlier
submission. Identical trained weights or identical code (up to comments and spacing) under
different names are flagged for the TA, not ranked apart. Names and flags come from records: they
reach the pages only through reports.escape.
"""

from __future__ import annotations

import base64
import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autograder.integrity.training import EXPLAIN, eligible
from autograder.reports.escape import csv_cell, inline, plot_label
from autograder.reports.feedback import page


@dataclass
class Entry:
    name: str
    shown_as: str
    accuracy: float | None
    parameters: int | None
    submitted: float
    eligible: bool
    flags: list[str]
    weights: str | None
    code: str | None
    rank: int | None = None
    bonus: float = 0.0
    duplicates: list[str] = field(default_factory=list)


@dataclass
class Leaderboard:
    assignment: str
    threshold: float
    entries: list[Entry]

    @property
    def ranked(self) -> list[Entry]:
        return sorted((e for e in self.entries if e.rank is not None), key=lambda e: e.rank or 0)


def pseudonym(name: str, assignment: str) -> str:
    return "student-" + hashlib.sha256(f"{assignment}/{name}".encode()).hexdigest()[:6]


def build_leaderboard(assignment: str, latest: list[tuple[dict[str, Any], float]], settings: dict[str, Any],
                      top_k: int | None = None, pseudonyms: bool = False) -> Leaderboard:
    board_settings = settings.get("leaderboard", {})
    bonus = list(board_settings.get("bonus", [3, 2, 1]))
    top_k = top_k if top_k is not None else int(board_settings.get("top_k", 3))
    entries = []
    for record, first_seen in latest:
        integrity = record.get("integrity") or {"flags": ["no_model"], "reproducible": None}
        name = record["submission"]
        entries.append(Entry(
            name=name, shown_as=pseudonym(name, assignment) if pseudonyms else name,
            accuracy=integrity.get("measured_accuracy"), parameters=integrity.get("parameters"),
            submitted=first_seen, eligible=record["status"] == "graded" and eligible(integrity),
            flags=list(integrity.get("flags", [])), weights=integrity.get("weights_sha256"),
            code=record.get("code_sha256")))
    _flag_duplicates(entries)
    contenders = sorted((e for e in entries if e.eligible and not e.duplicates),
                        key=lambda e: (-(e.accuracy or 0), e.parameters or 0, e.submitted, e.name))
    for rank, entry in enumerate(contenders, start=1):
        entry.rank = rank
        if rank <= top_k:
            entry.bonus = float(bonus[rank - 1]) if rank - 1 < len(bonus) else float(bonus[-1] if bonus else 0)
    threshold = float(settings.get("integrity", {}).get("threshold", 0.95))
    return Leaderboard(assignment, threshold, entries)


def _flag_duplicates(entries: list[Entry]) -> None:
    for key in ("weights", "code"):
        groups: dict[str, list[Entry]] = {}
        for entry in entries:
            value = getattr(entry, key)
            if value:
                groups.setdefault(value, []).append(entry)
        for group in groups.values():
            if len(group) > 1:
                for entry in group:
                    entry.duplicates += [f"same {key} as {other.shown_as}" for other in group if other is not entry]


def gradescope_entries(entry: Entry) -> list[dict[str, Any]]:
    """Gradescope's leaderboard fields for one submission's results.json."""
    return [
        {"name": "Accuracy (%)", "value": round(100 * (entry.accuracy or 0), 2), "order": "desc"},
        {"name": "Parameters", "value": entry.parameters or 0, "order": "asc"},
        {"name": "Eligible", "value": "yes" if entry.eligible and not entry.duplicates else "no"},
    ]


def _why_not(entry: Entry) -> str:
    reasons = [EXPLAIN.get(flag, flag) for flag in entry.flags] + entry.duplicates
    return "; ".join(reasons)


def write_leaderboard(board: Leaderboard, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    ordered = board.ranked + sorted((e for e in board.entries if e.rank is None),
                                    key=lambda e: (-(e.accuracy or 0), e.name))
    with (out / "leaderboard.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["rank", "student", "accuracy", "parameters", "bonus", "eligible", "flags"])
        for e in ordered:
            row = [e.rank or "", e.shown_as, "" if e.accuracy is None else f"{e.accuracy:.4f}",
                   e.parameters or "", e.bonus, "yes" if e.rank else "no", ";".join(e.flags + e.duplicates)]
            writer.writerow([csv_cell(cell) for cell in row])
    (out / "leaderboard.md").write_text(leaderboard_markdown(board, ordered, "leaderboard.png"), encoding="utf-8")
    _plot(board, out / "leaderboard.png")
    embedded = "data:image/png;base64," + base64.b64encode((out / "leaderboard.png").read_bytes()).decode()
    (out / "leaderboard.html").write_text(page(f"{board.assignment} leaderboard",
                                               leaderboard_markdown(board, ordered, embedded)), encoding="utf-8")


def leaderboard_markdown(board: Leaderboard, ordered: list[Entry], image: str) -> str:
    """`image`: where the plot is, its file name or a data: URL."""
    lines = [f"# {inline(board.assignment)}: leaderboard", "",
             f"Eligible: at least {100 * board.threshold:g} % measured by the grader, reproducible under the "
             "student's seed, trained without the test split, an MLP, within the time budget, and reporting "
             "its real accuracy. Ties: fewer parameters, then the earlier submission.", "",
             "| Rank | Student | Accuracy | Parameters | Bonus |", "|---|---|---|---|---|"]
    for e in board.ranked:
        lines.append(f"| {e.rank} | {inline(e.shown_as)} | {100 * (e.accuracy or 0):.2f} % | {e.parameters:,} | "
                     f"{e.bonus:g} |")
    others = [e for e in ordered if e.rank is None]
    if others:
        lines += ["", "## Not ranked", "", "| Student | Accuracy | Why |", "|---|---|---|"]
        for e in others:
            accuracy = "-" if e.accuracy is None else f"{100 * e.accuracy:.2f} %"
            lines.append(f"| {inline(e.shown_as)} | {accuracy} | {inline(_why_not(e))} |")
    lines += ["", f"![accuracies]({image})"]
    return "\n".join(lines) + "\n"


def _plot(board: Leaderboard, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = sorted((e for e in board.entries if e.accuracy is not None), key=lambda e: -(e.accuracy or 0))
    figure, axes = plt.subplots(figsize=(8, 0.35 * max(len(shown), 4) + 1.2), dpi=100)
    for row, entry in enumerate(shown):
        color = "#2a9d8f" if entry.rank else "#e76f51"
        axes.barh(row, 100 * (entry.accuracy or 0), color=color)
        label = f"#{entry.rank}" if entry.rank else "flagged: " + ", ".join(entry.flags + entry.duplicates)[:40]
        axes.text(100 * (entry.accuracy or 0) + 0.05, row, plot_label(label), va="center", fontsize=8,
                  parse_math=False)
    axes.axvline(100 * board.threshold, color="black", linestyle="--", linewidth=1)
    axes.set_yticks(range(len(shown)), [plot_label(e.shown_as) for e in shown], fontsize=8, parse_math=False)
    axes.invert_yaxis()
    low = min([100 * (e.accuracy or 0) for e in shown] + [100 * board.threshold]) - 1
    axes.set_xlim(max(0, low), 101)
    axes.set_xlabel("test accuracy measured by the grader (%); dashed: the threshold")
    axes.set_title(plot_label(f"{board.assignment}: ranked (green) and flagged (red)"), parse_math=False)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
