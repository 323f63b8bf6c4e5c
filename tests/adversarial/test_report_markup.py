"""Every report escapes what a submission wrote.

A class of fixture records (shaped like grade_job's) gets one markup payload in one string field per
case; every page is written and checked: the HTML pages, the Markdown rendered by renderers that do
not escape raw HTML, the CSVs, the plots and Gradescope's results.json. No payload may become an
element, an attribute, a link or a formula, no plot may fail on it, and the TA still reads its text.
No kernels: the records are plain data.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import mistune
import pytest
from markdown_it import MarkdownIt

from autograder.reports import leaderboard as leaderboard_module
from autograder.reports import summary as summary_module
from autograder.reports.escape import csv_cell
from autograder.reports.feedback import write_feedback
from autograder.reports.grades_csv import write_grades_csv
from autograder.reports.gradescope import write_gradescope
from autograder.reports.leaderboard import build_leaderboard, write_leaderboard
from autograder.reports.summary import write_summary

HW = "hw4_mnist"
SETTINGS = {"leaderboard": {"top_k": 3, "bonus": [3, 2, 1]}, "integrity": {"threshold": 0.95}}
PAYLOADS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '"><svg onload=alert(1)>',
    "[x](javascript:alert(1))",
    "![x](javascript:alert(1))",
    '<a href="javascript:alert(1)">x</a>',
    "<javascript:alert(1)>",
    "[x]\n\n[x]: javascript:alert(1)",
    "```` ``` `` ` <b>ticks</b>",
    "a `<iframe src=javascript:alert(1)>` b",
    "x | y |\n|---|---|\n| <iframe src=data:text/html,x> |",
    "one\n\n<script>alert(1)</script>\n- [x](data:text/html;base64,PHNjcmlwdD4=)\n```\n<b>",
    "&lt;script&gt;alert(1)&lt;/script&gt; &#x3C;b&#x3E;",
    "*em* _em_ ~~del~~ {onclick=alert(1)} [^1]",
    "$\\frac{1}{0}$",
    "$\\nosuchcommand{$ trailing \\",
    '=HYPERLINK("http://evil","x")',
    "+1+1",
    "@SUM(A1)",
    "-2+3",
    " \t=1+1",
    "\tcmd",
    "-rf student.ipynb",
    "evil\u202egnp.exe",
    "\x1b[31mred\x00",
]
# What our templates produce, and nothing else: any other element or attribute came from a payload.
ELEMENTS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "strong", "table", "thead",
            "tbody", "tr", "th", "td", "ul", "li", "pre", "code", "blockquote", "img"}
ATTRIBUTES = {"meta": {"charset"}, "img": {"src", "alt"}}
IMAGE_ALTS = {"score distribution", "accuracies"}
CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
PNG = b"\x89PNG\r\n\x1a\n"
MARKDOWN_VIEWERS = {
    "mistune": mistune.create_markdown(escape=False, plugins=["strikethrough", "footnotes", "table"]),
    "markdown-it": MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"]).render,
}


Records = dict[str, dict[str, Any]]  # the class, by role: graded, invalid, flagged, twin
Inject = Callable[[Records, str], None]


def _case(name: str, passed: bool, hidden: bool = False, message: str = "", traceback: str = "") -> dict[str, Any]:
    return {"name": name, "hidden": hidden, "points": 1.0 if passed else 0.0, "max_points": 1.0, "passed": passed,
            "message": message, "student_traceback": traceback}


def _question(name: str, cases: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": name, "score": sum(c["points"] for c in cases), "max_score": float(len(cases)), "seconds": 0.1,
            "cases": cases}


def _integrity(accuracy: float, weights: str, flags: list[str]) -> dict[str, Any]:
    return {"flags": flags, "reproducible": not flags, "measured_accuracy": accuracy, "parameters": 1000,
            "weights_sha256": weights, "architecture": "Linear(784, 128) -> ReLU -> Linear(128, 10)",
            "error": None}


def _graded(name: str, integrity: dict[str, Any]) -> dict[str, Any]:
    traceback = 'Traceback (most recent call last):\n  File "<cell 4>", line 2\nValueError: shapes do not match'
    return {
        "assignment": HW, "submission": name, "filename": f"{name}.ipynb", "sha256": "0" * 64, "grader_version": "v",
        "status": "graded", "message": None, "restarts": 1, "peak_memory_mb": 300.0, "include_hidden": True,
        "seconds": 4.2, "code_sha256": f"code-{name}", "integrity": integrity,
        "questions": [
            _question("q1_forward", [_case("test_shape", True),
                                     _case("test_values", False, message="values differ", traceback=traceback),
                                     _case("hidden", False, hidden=True, message="a hidden check failed")]),
            _question("q2_loss", [_case("test_loss", True)]),
        ],
        "cells": [{"index": 0, "status": "ok", "seconds": 2.5, "error": None},
                  {"index": 3, "status": "error", "seconds": 0.3, "error": "ValueError: shapes do not match",
                   "outputs": [{"output_type": "stream", "name": "stdout", "text": "training\n"}]}],
    }


def honest_class() -> Records:
    """Four submissions: ranked (with a failing cell), could not be graded, and two identical flagged ones."""
    invalid = _graded("bob", {"flags": ["no_model"], "reproducible": None, "error": "not a notebook"})
    invalid.update(status="invalid", message="bob.ipynb is not a notebook: Expecting value", cells=[], restarts=0,
                   peak_memory_mb=None, traceback="Traceback (most recent call last):\nInvalidSubmission")
    for question in invalid["questions"]:
        for case in question["cases"]:
            case.update(passed=False, points=0.0, message="the notebook could not be run", student_traceback="")
        question["score"] = 0.0
    return {"graded": _graded("alice", _integrity(0.97, "w-alice", [])), "invalid": invalid,
            "flagged": _graded("carol", _integrity(0.9, "w-copy", ["not_reproducible"])),
            "twin": _graded("dave", _integrity(0.9, "w-copy", ["not_reproducible"]))}


@dataclass(frozen=True)
class Field:
    name: str
    inject: Inject
    shown: frozenset[str] = frozenset()  # the pages where the TA must read it
    plots: frozenset[str] = frozenset()  # the matplotlib figures it labels


def _set(record: str, key: str) -> Inject:
    return lambda records, payload: records[record].__setitem__(key, payload)


def _in_case(index: int, key: str) -> Inject:
    """In every graded record, so that the summary's most failed checks name it."""
    def inject(records: Records, payload: str) -> None:
        for record in (records["graded"], records["flagged"], records["twin"]):
            record["questions"][0]["cases"][index][key] = payload
    return inject


def _in_cell(key: str) -> Inject:
    return lambda records, payload: records["graded"]["cells"][1].__setitem__(key, payload)


def _assignment(records: Records, payload: str) -> None:
    for record in records.values():
        record["assignment"] = payload


def _question_name(records: Records, payload: str) -> None:
    for record in records.values():
        record["questions"][0]["name"] = payload


def _cell_output(records: Records, payload: str) -> None:
    records["graded"]["cells"][1]["outputs"] = [
        {"output_type": "stream", "name": "stdout", "text": payload},
        {"output_type": "display_data", "data": {"text/html": payload, "text/markdown": payload}}]


def _in_integrity(key: str, as_list: bool = False) -> Inject:
    def inject(records: Records, payload: str) -> None:
        integrity = records["flagged"]["integrity"]
        integrity[key] = integrity[key] + [payload] if as_list else payload
    return inject


LEADERBOARD_PLOT = frozenset({"leaderboard"})
# Fields shown on no page (file names, cell outputs, the architecture) must only stay inert.
FIELDS = [
    Field("submission", _set("graded", "submission"),
          frozenset({"feedback", "summary", "leaderboard", "final_grades.csv", "leaderboard.csv"}), LEADERBOARD_PLOT),
    Field("flagged_name", _set("flagged", "submission"),
          frozenset({"feedback", "leaderboard", "final_grades.csv", "leaderboard.csv"}), LEADERBOARD_PLOT),
    Field("assignment", _assignment, frozenset({"feedback", "summary", "leaderboard"}),
          frozenset({"histogram", "leaderboard"})),
    Field("filename", _set("graded", "filename")),
    Field("record_message", _set("invalid", "message"),
          frozenset({"feedback", "summary", "final_grades.csv", "results.json"})),
    Field("grader_traceback", _set("invalid", "traceback")),
    Field("case_message", _in_case(1, "message"), frozenset({"feedback", "results.json"})),
    Field("hidden_case_message", _in_case(2, "message"), frozenset({"feedback", "results.json"})),
    Field("case_name", _in_case(1, "name"), frozenset({"feedback", "summary", "results.json"})),
    Field("student_traceback", _in_case(1, "student_traceback"), frozenset({"feedback"})),
    Field("cell_error", _in_cell("error"), frozenset({"feedback"})),
    Field("cell_status", _in_cell("status"), frozenset({"feedback", "summary"})),
    Field("cell_outputs", _cell_output),
    Field("question_name", _question_name, frozenset({"feedback", "summary", "final_grades.csv", "results.json"})),
    Field("integrity_flag", _in_integrity("flags", as_list=True),
          frozenset({"leaderboard", "leaderboard.csv"}), LEADERBOARD_PLOT),
    Field("integrity_architecture", _in_integrity("architecture")),
    Field("integrity_error", _in_integrity("error")),
]


def write_everything(records: Records, out: Path) -> None:
    """Every report, through the same entry points batch.write_reports and publish_leaderboard use."""
    assignment = records["graded"]["assignment"]
    classlist = list(records.values())
    board = build_leaderboard(assignment, [(r, float(i)) for i, r in enumerate(classlist)], SETTINGS)
    bonus = {entry.name: entry.bonus for entry in board.entries}
    write_grades_csv(classlist, out / "final_grades.csv", {"bonus": bonus})
    for index, record in enumerate(classlist):
        write_gradescope(record, out / "results" / f"s{index}.json")
        write_feedback(record, out / "feedback", f"s{index}")
    write_summary(assignment, classlist, out)
    write_leaderboard(board, out)


class Page(HTMLParser):
    """The elements, attributes and text of an HTML page."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.texts: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_data(self, data: str) -> None:
        self.texts.append(data)

    @property
    def text(self) -> str:
        return squeeze("".join(self.texts))


def squeeze(text: str) -> str:
    return " ".join(text.split())


def shown(payload: str) -> str:
    """How a page shows the payload: control characters as code points, whitespace squeezed."""
    return squeeze(CONTROLS.sub(lambda match: f"\\u{ord(match.group()):04x}", payload))


def assert_only_our_markup(html_text: str, image: str | None, where: str) -> Page:
    page = Page(html_text)
    images = [attrs for tag, attrs in page.elements if tag == "img"]
    for tag, attrs in page.elements:
        assert tag in ELEMENTS, f"{where}: <{tag} {attrs}> is not ours"
        extra = set(attrs) - ATTRIBUTES.get(tag, set())
        assert not extra, f"{where}: <{tag}> got attributes {extra}"
    assert len(images) <= 1, f"{where}: {images}"
    for attrs in images:
        assert image is not None and (attrs["src"] or "").startswith(image) and attrs["alt"] in IMAGE_ALTS, \
            f"{where}: {attrs}"
    return page


def runs_as_formula(cell: str) -> bool:
    """What a spreadsheet would evaluate; numbers such as -1 are numbers."""
    try:
        float(cell)
        return False
    except ValueError:
        return bool(re.match("[\t\r\n]|\\s*[=+\\-@\uff1d\uff0b\uff0d\uff20]", cell))


def _html_pages(out: Path) -> dict[str, tuple[str, str]]:
    """page kind -> (file, where its one image must point)."""
    pages = {f"feedback/{p.name}": ("feedback", "") for p in (out / "feedback").glob("*.html")}
    return pages | {"summary.html": ("summary", "data:image/png;base64,"),
                    "leaderboard.html": ("leaderboard", "data:image/png;base64,")}


def _markdown_pages(out: Path) -> dict[str, tuple[str, str]]:
    pages = {f"feedback/{p.name}": ("feedback", "") for p in (out / "feedback").glob("*.md")}
    return pages | {"summary.md": ("summary", "score_distribution.png"),
                    "leaderboard.md": ("leaderboard", "leaderboard.png")}


def check_html(out: Path, field: Field, payload: str) -> None:
    seen: dict[str, str] = {}
    for name, (kind, image) in _html_pages(out).items():
        page = assert_only_our_markup((out / name).read_text(encoding="utf-8"), image or None, name)
        seen[kind] = seen.get(kind, "") + " " + page.text
    for kind in field.shown & set(seen):
        assert shown(payload) in seen[kind], f"{kind} html does not show {payload!r}"


def check_markdown(out: Path, field: Field, payload: str) -> None:
    for viewer, render in MARKDOWN_VIEWERS.items():
        seen: dict[str, str] = {}
        for name, (kind, image) in _markdown_pages(out).items():
            rendered = render((out / name).read_text(encoding="utf-8"))
            page = assert_only_our_markup(rendered, image or None, f"{name} in {viewer}")
            seen[kind] = seen.get(kind, "") + " " + page.text
        for kind in field.shown & set(seen):
            assert shown(payload) in seen[kind], f"{kind} md in {viewer} does not show {payload!r}"


def check_csv(out: Path, field: Field, payload: str) -> None:
    for name in ("final_grades.csv", "leaderboard.csv"):
        rows = list(csv.reader((out / name).open(newline="", encoding="utf-8")))
        ours = [rows[1]] if name == "final_grades.csv" else []  # the points row: otter's "--"
        cells = [cell for row in rows if row not in ours for cell in row]
        assert not [cell for cell in cells if runs_as_formula(cell)], name
        if name in field.shown:
            assert any(payload in cell for cell in cells), f"{name} lost {payload!r}"


def check_gradescope(out: Path, field: Field, payload: str) -> None:
    texts = []
    for path in (out / "results").glob("*.json"):
        result = json.loads(path.read_text(encoding="utf-8"))
        assert result["output_format"] == "text" and all(t["output_format"] == "text" for t in result["tests"])
        texts += [result["output"], *(t["output"] for t in result["tests"]), *(t["name"] for t in result["tests"])]
    if "results.json" in field.shown:
        assert any(payload in text for text in texts), f"results.json lost {payload!r}"


def _blank_png(_: object, path: Path, *__: object) -> None:
    path.write_bytes(PNG)


@pytest.mark.parametrize("payload", PAYLOADS, ids=[f"p{i}" for i in range(len(PAYLOADS))])
@pytest.mark.parametrize("field", FIELDS, ids=[f.name for f in FIELDS])
def test_reports_keep_student_text_inert(field: Field, payload: str, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # Drawing costs 0.1 s a figure: only the figures the field labels are drawn for real.
    if "histogram" not in field.plots:
        monkeypatch.setattr(summary_module, "write_histogram", _blank_png)
    if "leaderboard" not in field.plots:
        monkeypatch.setattr(leaderboard_module, "_plot", _blank_png)
    records = honest_class()
    field.inject(records, payload)
    write_everything(records, tmp_path)
    check_html(tmp_path, field, payload)
    check_markdown(tmp_path, field, payload)
    check_csv(tmp_path, field, payload)
    check_gradescope(tmp_path, field, payload)
    for png in ("score_distribution.png", "leaderboard.png"):
        assert (tmp_path / png).read_bytes().startswith(PNG)


def test_honest_class_reports_are_unchanged(tmp_path: Path) -> None:
    """Escaping changes nothing for honest names: the grade sheets byte for byte as before."""
    write_everything(honest_class(), tmp_path)
    assert (tmp_path / "final_grades.csv").read_text(encoding="utf-8").splitlines() == [
        "file,q1_forward,q2_loss,bonus,total_points_earned,percent_correct,grading_status",
        "points-per-question,3.0,1.0,,4.0,1,--",
        "alice,1.0,1.0,3.0,5.0,1.25,Completed",
        "bob,0.0,0.0,0.0,0.0,0.0,bob.ipynb is not a notebook: Expecting value",
        "carol,1.0,1.0,0.0,2.0,0.5,Completed",
        "dave,1.0,1.0,0.0,2.0,0.5,Completed",
    ]
    assert (tmp_path / "leaderboard.csv").read_text(encoding="utf-8").splitlines() == [
        "rank,student,accuracy,parameters,bonus,eligible,flags",
        "1,alice,0.9700,1000,3.0,yes,",
        ",carol,0.9000,1000,0.0,no,not_reproducible;same weights as dave",
        ",dave,0.9000,1000,0.0,no,not_reproducible;same weights as carol",
        ",bob,,,0.0,no,no_model",
    ]
    feedback = (tmp_path / "feedback" / "s0.md").read_text(encoding="utf-8")
    assert "# hw4_mnist: feedback for alice" in feedback and "public check `test_values`: values differ" in feedback


@pytest.mark.parametrize(("value", "written"), [
    ("-rf student.ipynb", "'-rf student.ipynb"), ("=1+1", "'=1+1"), (" @x", "' @x"), ("\tx", "'\tx"),
    ("\r=x", "'\r=x"), ("-1", "-1"), ("-0.9700", "-0.9700"), ("1e-3", "1e-3"), (-1, -1), (-0.5, -0.5),
    ("alice/reference.ipynb", "alice/reference.ipynb"), ("", ""), ("Completed", "Completed"),
])
def test_csv_cells(value: object, written: object) -> None:
    assert csv_cell(value) == written
