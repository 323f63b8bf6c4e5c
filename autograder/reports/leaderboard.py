"""The bonus leaderboard of a trained-model assignment, built from the result store.

Eligible: the grader measured at least the threshold, the weights reproduce under the student's
seed, the test split played no part, the model is an MLP, within budget, and the reported accuracy
is the real one. Ranked by measured accuracy; ties go to fewer parameters, then to the earlier
submission.

Possible copies go to the TA, never to the void: identical trained weights, identical code (up to
comments and spacing), or normalised code at least `similarity_threshold` alike
(integrity.similarity; the stub's own code does not count) put submissions in one review group.
The earliest of a group (by when its content first came in) stays ranked unless the TA rejects it;
the later ones are "under review", not ranked until the TA accepts (not a copy) or rejects (a copy)
them. Decisions live in review.json next to the leaderboard, bound to the submission's content: a
resubmission is reviewed again. Names and flags come from records: they reach the pages only
through reports.escape.
"""

from __future__ import annotations

import base64
import csv
import difflib
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autograder.course import CourseError
from autograder.intake.notebook import InvalidSubmission, ParsedNotebook, parse_notebook
from autograder.integrity.similarity import COMMON_FRACTION, SimilarityIndex, stub_fingerprints
from autograder.integrity.training import EXPLAIN, eligible
from autograder.reports.escape import csv_cell, inline, plot_label, visible
from autograder.reports.feedback import page

ORIGINAL, UNDER_REVIEW, ACCEPTED, REJECTED = "original", "under review", "accepted", "rejected"
STATUS = {
    ORIGINAL: "earliest of its group: ranked unless rejected",
    UNDER_REVIEW: "under review: not ranked until the TA decides",
    ACCEPTED: "accepted by the TA: not a copy",
    REJECTED: "rejected by the TA as a copy: not ranked",
}
REVIEW_FILE = "review.json"
DEFAULT_SIMILARITY = 0.9
SAME_RUN = 60.0  # seconds: submissions first seen this close together came in with one grading run


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
    fingerprints: list[int] | None = None  # None: an older record, similarity unknown
    sha256: str | None = None
    rank: int | None = None
    bonus: float = 0.0
    duplicates: list[str] = field(default_factory=list)  # the evidence: "same weights as X", ...
    review: str | None = None  # ORIGINAL, UNDER_REVIEW, ACCEPTED, REJECTED; None: nothing to review


@dataclass
class Pair:
    a: Entry
    b: Entry
    same_weights: bool = False
    same_code: bool = False
    similarity: float | None = None  # share of own normalised code; None: not known

    def what(self) -> str:
        parts = (["same trained weights"] if self.same_weights else []) + (
            ["same code up to comments and spacing"] if self.same_code else [])
        if self.similarity is not None and not self.same_code:
            parts.append(f"{100 * self.similarity:.0f} % of the normalised code shared")
        return ", ".join(parts)


@dataclass
class ReviewGroup:
    members: list[Entry]  # earliest first
    pairs: list[Pair]

    @property
    def order_unknown(self) -> bool:
        """The first two came in within SAME_RUN seconds: one grading run noted both, so which one
        came first is the store's order, not the students'."""
        return self.members[1].submitted - self.members[0].submitted < SAME_RUN

    def order_note(self) -> str:
        first, second = self.members[0], self.members[1]
        return (f"{first.shown_as} and {second.shown_as} came in within {SAME_RUN:g} s of each other (one grading "
                "run): which one is the original is not known, check before deciding")


@dataclass
class Leaderboard:
    assignment: str
    threshold: float
    entries: list[Entry]
    similarity_threshold: float = DEFAULT_SIMILARITY
    groups: list[ReviewGroup] = field(default_factory=list)
    decisions: dict[str, dict[str, Any]] = field(default_factory=dict)  # by real name, for review.json
    stale: list[Entry] = field(default_factory=list)  # decided on an earlier version: not applied

    @property
    def ranked(self) -> list[Entry]:
        return sorted((e for e in self.entries if e.rank is not None), key=lambda e: e.rank or 0)

    @property
    def under_review(self) -> list[Entry]:
        return [e for e in self.entries if e.review == UNDER_REVIEW]

    def summary(self) -> list[str]:
        """What the TA has to decide, as plain lines for a terminal (control characters made visible)."""
        if not self.groups and not self.stale:
            return ["No possible copies (identical weights, identical or similar code)."]
        lines = [f"Under review: {len(self.under_review)} submission(s) in {len(self.groups)} group(s) of possible "
                 f"copies; decide with --accept NAME (not a copy, ranked) or --reject NAME (a copy, not ranked)."]
        for number, group in enumerate(self.groups, start=1):
            members = ", ".join(f"{visible(e.shown_as)} ({e.review}{', ranked' if e.rank else ''})"
                                for e in group.members)
            lines.append(f"  group {number}: {members}")
            for pair in group.pairs:
                lines.append(f"    {visible(pair.a.shown_as)} / {visible(pair.b.shown_as)}: {pair.what()}")
            if group.order_unknown:
                lines.append(f"    note: {visible(group.order_note())}")
        for entry in self.stale:
            lines.append(f"  the decision on {visible(entry.shown_as)} was for an earlier version of it: not "
                         "applied, decide again")
        return lines


def pseudonym(name: str, assignment: str) -> str:
    return "student-" + hashlib.sha256(f"{assignment}/{name}".encode()).hexdigest()[:6]


def build_leaderboard(assignment: str, latest: list[tuple[dict[str, Any], float]], settings: dict[str, Any],
                      top_k: int | None = None, pseudonyms: bool = False, *, stub: bytes | Sequence[str] | None = None,
                      review: dict[str, dict[str, Any]] | None = None, accept: Sequence[str] = (),
                      reject: Sequence[str] = ()) -> Leaderboard:
    """`stub`: the notebook every student started from (bytes or its code cells); its code is not
    similarity. `review`: earlier decisions (read_review); `accept`/`reject`: new ones, by name or
    pseudonym."""
    board_settings = settings.get("leaderboard", {})
    bonus = list(board_settings.get("bonus", [3, 2, 1]))
    top_k = top_k if top_k is not None else int(board_settings.get("top_k", 3))
    try:
        similar = float(board_settings.get("similarity_threshold", DEFAULT_SIMILARITY))
    except (TypeError, ValueError):
        similar = float("nan")
    if not similar > 0:  # above 1: code similarity is off, identical weights and code still count
        raise CourseError(f"[leaderboard] similarity_threshold = {board_settings.get('similarity_threshold')!r}: "
                          "it must be a number above 0 (up to 1: a share of the code; above 1: similarity off)")
    entries = []
    for record, first_seen in latest:
        integrity = record.get("integrity") or {"flags": ["no_model"], "reproducible": None}
        name = record["submission"]
        prints = record.get("code_fingerprints")
        entries.append(Entry(
            name=name, shown_as=pseudonym(name, assignment) if pseudonyms else name,
            accuracy=integrity.get("measured_accuracy"), parameters=integrity.get("parameters"),
            submitted=first_seen, eligible=record["status"] == "graded" and eligible(integrity),
            flags=list(integrity.get("flags", [])), weights=integrity.get("weights_sha256"),
            code=record.get("code_sha256"), fingerprints=prints if isinstance(prints, list) else None,
            sha256=record.get("sha256")))
    decisions = _decisions(assignment, entries, dict(review or {}), accept, reject)
    groups = _review_groups(entries, _stub_code(stub), similar,
                            float(board_settings.get("similarity_common_fraction", COMMON_FRACTION)))
    stale = _apply(entries, groups, decisions)
    contenders = sorted((e for e in entries if e.eligible and e.review not in (UNDER_REVIEW, REJECTED)),
                        key=lambda e: (-(e.accuracy or 0), e.parameters or 0, e.submitted, e.name))
    for rank, entry in enumerate(contenders, start=1):
        entry.rank = rank
        if rank <= top_k:
            entry.bonus = float(bonus[rank - 1]) if rank - 1 < len(bonus) else float(bonus[-1] if bonus else 0)
    threshold = float(settings.get("integrity", {}).get("threshold", 0.95))
    return Leaderboard(assignment, threshold, entries, similar, groups, decisions, stale)


def _stub_code(stub: bytes | Sequence[str] | None) -> tuple[set[int], str | None]:
    """The stub's fingerprints and code hash: what every student has without writing anything."""
    if stub is None:
        return set(), None
    if isinstance(stub, bytes):
        try:
            cells = parse_notebook("stub.ipynb", stub).code_cells
        except InvalidSubmission:
            return set(), None
    else:
        cells = list(stub)
    return stub_fingerprints(cells), ParsedNotebook(cells, 4).code_fingerprint


def _review_groups(entries: list[Entry], stub: tuple[set[int], str | None], threshold: float,
                   common_fraction: float) -> list[ReviewGroup]:
    stub_prints, stub_code = stub
    by_name = {e.name: e for e in entries}
    index = SimilarityIndex({e.name: e.fingerprints for e in entries}, stub_prints, common_fraction)
    pairs: dict[tuple[str, str], Pair] = {}

    def pair(a: Entry, b: Entry) -> Pair:
        a, b = sorted((a, b), key=lambda e: (e.submitted, e.name))
        key = (a.name, b.name)
        if key not in pairs:
            pairs[key] = Pair(a, b, similarity=index.score(a.name, b.name))
        return pairs[key]

    for key in ("weights", "code"):
        same: dict[str, list[Entry]] = {}
        for entry in entries:
            value = getattr(entry, key)
            if value and not (key == "code" and value == stub_code):  # the untouched stub is no copy
                same.setdefault(value, []).append(entry)
        for members in same.values():
            for i, a in enumerate(members):
                for b in members[i + 1:]:
                    setattr(pair(a, b), f"same_{key}", True)
    for a, b, _ in index.pairs(threshold):
        pair(by_name[a], by_name[b])

    parent = {e.name: e.name for e in entries}

    def root(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    for a, b in pairs:
        parent[root(a)] = root(b)
    components: dict[str, list[Entry]] = {}
    for entry in entries:
        components.setdefault(root(entry.name), []).append(entry)
    groups = []
    for members in components.values():
        if len(members) > 1:
            names = {e.name for e in members}
            members.sort(key=lambda e: (e.submitted, e.name))
            order = {e.name: i for i, e in enumerate(members)}
            inside = sorted((p for k, p in pairs.items() if k[0] in names),
                            key=lambda p: (order[p.a.name], order[p.b.name]))
            groups.append(ReviewGroup(members, inside))
    groups.sort(key=lambda g: (g.members[0].submitted, g.members[0].name))
    for p in pairs.values():
        for entry, other in ((p.a, p.b), (p.b, p.a)):
            if p.same_weights:
                entry.duplicates.append(f"same weights as {other.shown_as}")
            if p.same_code:
                entry.duplicates.append(f"same code as {other.shown_as}")
            elif p.similarity is not None and p.similarity >= threshold:
                entry.duplicates.append(f"similar code to {other.shown_as} ({100 * p.similarity:.0f} %)")
    return groups


def _decisions(assignment: str, entries: list[Entry], previous: dict[str, dict[str, Any]],
               accept: Sequence[str], reject: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Earlier decisions with the new ones on top, each bound to the content it was made on."""
    known: dict[str, Entry] = {}
    for entry in entries:
        known[entry.name] = known[pseudonym(entry.name, assignment)] = entry

    def find(name: str) -> Entry:
        if name not in known:
            names = [e.name for e in entries]
            close = [n for n in names if name and name in n][:3] or difflib.get_close_matches(name, names, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise CourseError(f"no submission {name!r} for {assignment} in the result store{hint}")
        return known[name]

    new = [(find(name), ACCEPTED) for name in accept] + [(find(name), REJECTED) for name in reject]
    both = {e.name for e, d in new if d == ACCEPTED} & {e.name for e, d in new if d == REJECTED}
    if both:
        raise CourseError(f"both --accept and --reject for {', '.join(sorted(both))}")
    now = datetime.now(UTC).isoformat(timespec="seconds")
    decisions = dict(previous)
    for entry, decision in new:
        decisions[entry.name] = {"decision": decision, "sha256": entry.sha256, "decided": now}
    return decisions


def _apply(entries: list[Entry], groups: list[ReviewGroup], decisions: dict[str, dict[str, Any]]) -> list[Entry]:
    for group in groups:
        group.members[0].review = ORIGINAL
        for entry in group.members[1:]:
            entry.review = UNDER_REVIEW
    stale = []
    for entry in entries:
        decision = decisions.get(entry.name)
        if decision is None:
            continue
        if decision.get("sha256") not in (None, entry.sha256):
            if entry.review is not None:
                stale.append(entry)
        elif decision["decision"] == REJECTED or entry.review is not None:
            entry.review = decision["decision"]
    return stale


def read_review(out: Path) -> dict[str, dict[str, Any]]:
    """The TA's decisions stored next to the leaderboard in `out`, by submission name."""
    path = out / REVIEW_FILE
    if not path.is_file():
        return {}
    try:
        decisions = json.loads(path.read_text(encoding="utf-8"))["decisions"]
        if not isinstance(decisions, dict) or not all(
                isinstance(d, dict) and d.get("decision") in (ACCEPTED, REJECTED) for d in decisions.values()):
            raise ValueError("each decision must be {\"decision\": \"accepted\" or \"rejected\", \"sha256\": ...}")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CourseError(f"{path}: the TA's review decisions cannot be read ({error}); fix or delete it") from error
    return decisions


def gradescope_entries(entry: Entry) -> list[dict[str, Any]]:
    """Gradescope's leaderboard fields for one submission's results.json."""
    return [
        {"name": "Accuracy (%)", "value": round(100 * (entry.accuracy or 0), 2), "order": "desc"},
        {"name": "Parameters", "value": entry.parameters or 0, "order": "asc"},
        {"name": "Eligible", "value": "yes" if entry.rank is not None else "no"},
    ]


def _why_not(entry: Entry) -> str:
    reasons = [EXPLAIN.get(flag, flag) for flag in entry.flags]
    if entry.review in (UNDER_REVIEW, REJECTED):
        reasons.append(STATUS[entry.review])
    return "; ".join(reasons + entry.duplicates)


def write_leaderboard(board: Leaderboard, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    ordered = board.ranked + sorted((e for e in board.entries if e.rank is None),
                                    key=lambda e: (-(e.accuracy or 0), e.name))
    with (out / "leaderboard.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["rank", "student", "accuracy", "parameters", "bonus", "eligible", "flags"])
        for e in ordered:  # the layout TAs' scripts read; review status: leaderboard.md and review.json
            row = [e.rank or "", e.shown_as, "" if e.accuracy is None else f"{e.accuracy:.4f}",
                   e.parameters or "", e.bonus, "yes" if e.rank else "no", ";".join(e.flags + e.duplicates)]
            writer.writerow([csv_cell(cell) for cell in row])
    (out / "leaderboard.md").write_text(leaderboard_markdown(board, ordered, "leaderboard.png"), encoding="utf-8")
    _plot(board, out / "leaderboard.png")
    embedded = "data:image/png;base64," + base64.b64encode((out / "leaderboard.png").read_bytes()).decode()
    (out / "leaderboard.html").write_text(page(f"{board.assignment} leaderboard",
                                               leaderboard_markdown(board, ordered, embedded)), encoding="utf-8")
    review = {"assignment": board.assignment,
              "note": "TA decisions on possible copies: `autograder leaderboard HW --out OUT --accept NAME` (not a "
                      "copy) or `--reject NAME` (a copy); a decision holds for the content (sha256) it was made on",
              "decisions": dict(sorted(board.decisions.items())),
              "under_review": sorted(e.name for e in board.under_review)}
    (out / REVIEW_FILE).write_text(json.dumps(review, indent=2) + "\n", encoding="utf-8")


def _status(entry: Entry) -> str:
    if entry.rank is not None:
        return f"{entry.review}: ranked {entry.rank}"
    if entry.review == ORIGINAL:
        return "earliest of its group; not eligible"
    return STATUS[entry.review or ORIGINAL]


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def leaderboard_markdown(board: Leaderboard, ordered: list[Entry], image: str) -> str:
    """`image`: where the plot is, its file name or a data: URL."""
    lines = [f"# {inline(board.assignment)}: leaderboard", "",
             f"Eligible: at least {100 * board.threshold:g} % measured by the grader, reproducible under the "
             "student's seed, trained without the test split, an MLP, within the time budget, and reporting "
             "its real accuracy. Ties: fewer parameters, then the earlier submission.", "",
             "| Rank | Student | Accuracy | Parameters | Bonus |", "|---|---|---|---|---|"]
    for e in board.ranked:
        lines.append(f"| {e.rank} | {inline(e.shown_as)} | {100 * (e.accuracy or 0):.2f} % | {e.parameters or 0:,} | "
                     f"{e.bonus:g} |")
    if board.groups or board.stale:
        lines += ["", "## Under review", "",
                  "Possible copies: identical trained weights, identical code (up to comments and spacing)"
                  + (f", or at least {100 * board.similarity_threshold:g} % of the normalised code shared (names, "
                     "constants, comments and no-op lines do not count, nor does the stub's code)"
                     if board.similarity_threshold <= 1 else "") + ". The earliest submission of a "
                  "group stays ranked unless the TA rejects it; the later ones are not ranked until the TA accepts "
                  "(not a copy) or rejects (a copy) them."]
        for number, group in enumerate(board.groups, start=1):
            lines += ["", f"### Group {number}", "", "| Student | First submitted | Status | Accuracy |",
                      "|---|---|---|---|"]
            for e in group.members:
                accuracy = "-" if e.accuracy is None else f"{100 * e.accuracy:.2f} %"
                status = _status(e)
                lines.append(f"| {inline(e.shown_as)} | {_when(e.submitted)} | {status} | {accuracy} |")
            lines += ["", "| Pair | Code similarity | What is identical |", "|---|---|---|"]
            for p in group.pairs:
                score = "-" if p.similarity is None else f"{100 * p.similarity:.0f} %"
                lines.append(f"| {inline(p.a.shown_as)} / {inline(p.b.shown_as)} | {score} | {p.what()} |")
            if group.order_unknown:
                lines += ["", f"Note: {inline(group.order_note())}."]
        if board.stale:
            lines += ["", "Decided on an earlier version, to decide again: "
                      + ", ".join(inline(e.shown_as) for e in board.stale) + "."]
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
        reviewed = entry.review == UNDER_REVIEW
        color = "#2a9d8f" if entry.rank else "#f4a261" if reviewed else "#e76f51"
        axes.barh(row, 100 * (entry.accuracy or 0), color=color)
        label = (f"#{entry.rank}" if entry.rank else
                 ("under review: " if reviewed else "flagged: ") + ", ".join(entry.flags + entry.duplicates)[:40])
        axes.text(100 * (entry.accuracy or 0) + 0.05, row, plot_label(label), va="center", fontsize=8,
                  parse_math=False)
    axes.axvline(100 * board.threshold, color="black", linestyle="--", linewidth=1)
    axes.set_yticks(range(len(shown)), [plot_label(e.shown_as) for e in shown], fontsize=8, parse_math=False)
    axes.invert_yaxis()
    low = min([100 * (e.accuracy or 0) for e in shown] + [100 * board.threshold]) - 1
    axes.set_xlim(max(0, low), 101)
    axes.set_xlabel("test accuracy measured by the grader (%); dashed: the threshold")
    axes.set_title(plot_label(f"{board.assignment}: ranked (green), under review (orange), flagged (red)"),
                   parse_math=False)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
