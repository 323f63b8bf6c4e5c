"""Possible copies on the leaderboard go to the TA, never to the void (no kernels: records as
grading/job.py makes them, from notebooks filled in from the real hw4 stub).

alice writes her own training loop; bob hands in alice's notebook with one comment changed; dave
hands it in with another seed, renamed variables and no-op lines; carol fills the same stub in a
genuinely different way; eve's record (an older grade, without code fingerprints) has carol's
trained weights; frank is an older record of his own.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import random
import re
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest

from autograder.cli import main
from autograder.course import Course, CourseError
from autograder.grading.batch import publish_leaderboard
from autograder.grading.material import Material, grader_code_digest
from autograder.intake.notebook import parse_notebook
from autograder.integrity.similarity import code_fingerprints, normalise, similarity, stub_fingerprints
from autograder.reports.leaderboard import (
    ACCEPTED,
    ORIGINAL,
    REJECTED,
    UNDER_REVIEW,
    build_leaderboard,
    pseudonym,
    read_review,
    write_leaderboard,
)
from autograder.store import Store

HW = "hw4_mnist"
REPO = Path(__file__).resolve().parents[1]
STUB_PATH = Course(REPO).assignment(HW).student_notebook
STUB = nbformat.reads(STUB_PATH.read_text(encoding="utf-8"), as_version=4)
STUB_CELLS = [c.source for c in STUB.cells if c.cell_type == "code"]
SETTINGS = {"integrity": {"threshold": 0.95}, "leaderboard": {"top_k": 3, "bonus": [3, 2, 1]}}
THRESHOLD = 0.9
HOUR = 3600.0

# Where each answer goes: a line that only the stub cell to fill in has.
NORMALIZE, ACCURACY = "def normalize(images, mean, std):", "def accuracy(logits, labels):"
CONSTANTS, MODEL, TRAIN, EVALUATE = "# TODO: SEED", "# TODO: set_seed(SEED)", "# TODO: train", "# TODO: model.eval()"

ALICE = {
    NORMALIZE: '''
def normalize(images, mean, std):
    flat = images.reshape(len(images), -1).astype(np.float32) / 255.0
    return torch.from_numpy((flat - mean) / std).float()
''',
    ACCURACY: '''
def accuracy(logits, labels):
    logits, labels = torch.as_tensor(logits), torch.as_tensor(labels)
    return float((logits.argmax(dim=1) == labels).float().mean())
''',
    CONSTANTS: '''
SEED = 1234
MEAN = float(train_images.mean() / 255)
STD = float(train_images.std() / 255)
''',
    MODEL: '''
set_seed(SEED)
model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
''',
    TRAIN: '''
g = torch.Generator().manual_seed(SEED)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
t0 = time.perf_counter()
for epoch in range(5):
    model.train()
    # one pass over the shuffled training set
    perm = torch.randperm(len(X_train), generator=g)
    for start in range(0, len(X_train), 128):
        idx = perm[start:start + 128]
        loss = F.cross_entropy(model(X_train[idx]), y_train[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"epoch {epoch}: loss {loss.item():.4f}")
train_time = time.perf_counter() - t0
''',
    EVALUATE: '''
model.eval()
with torch.no_grad():
    logits = model(X_test)
reported_accuracy = accuracy(logits, y_test)
''',
}
BOB = ALICE | {TRAIN: ALICE[TRAIN].replace("# one pass over the shuffled training set",
                                          "# my own loop: I wrote this from scratch")}
DAVE = {  # alice's notebook: another seed, every name of her own renamed, no-op lines, other comments
    NORMALIZE: '''
def normalize(imgs, m, s):
    """Scale to [0, 1], standardise."""
    x = imgs.reshape(len(imgs), -1).astype(np.float32) / 255.0
    return torch.from_numpy((x - m) / s).float()
''',
    ACCURACY: '''
def accuracy(out, target):
    out, target = torch.as_tensor(out), torch.as_tensor(target)
    return float((out.argmax(dim=1) == target).float().mean())
''',
    CONSTANTS: '''
SEED = 99  # my lucky number
MEAN = float(train_images.mean() / 255)
STD = float(train_images.std() / 255)
learning_rate_i_tried = 0.05
''',
    MODEL: '''
set_seed(SEED)
model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
model
''',
    TRAIN: '''
rng = torch.Generator().manual_seed(SEED)
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
begin = time.perf_counter()
for ep in range(5):
    model.train()
    order = torch.randperm(len(X_train), generator=rng)
    for pos in range(0, len(X_train), 128):
        batch = order[pos:pos + 128]
        pass
        l = F.cross_entropy(model(X_train[batch]), y_train[batch])
        opt.zero_grad()
        l.backward()
        opt.step()
    print(f"[{ep}] l={l.item():.3f}")
train_time = time.perf_counter() - begin
''',
    EVALUATE: '''
model.eval()
with torch.no_grad():
    scores = model(X_test)
if False:
    print("debugging")
reported_accuracy = accuracy(scores, y_test)
''',
}
CAROL = {
    NORMALIZE: '''
def normalize(images, mean, std):
    x = torch.tensor(images, dtype=torch.float32).view(-1, 28 * 28)
    x = x / 255.0
    x = (x - mean) / std
    return x
''',
    ACCURACY: '''
def accuracy(logits, labels):
    predicted = np.argmax(np.asarray(logits), axis=1)
    correct = np.sum(predicted == np.asarray(labels))
    return float(correct) / len(predicted)
''',
    CONSTANTS: '''
SEED = 7
pixels = train_images.astype(np.float64) / 255
MEAN, STD = pixels.mean().item(), pixels.std().item()
''',
    MODEL: '''
class MLP(nn.Module):
    def __init__(self, hidden=(512, 128), p=0.1):
        super().__init__()
        layers, width = [], 784
        for h in hidden:
            layers += [nn.Linear(width, h), nn.GELU(), nn.Dropout(p)]
            width = h
        layers.append(nn.Linear(width, 10))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


set_seed(SEED)
model = MLP()
''',
    TRAIN: '''
from torch.utils.data import DataLoader, TensorDataset

loader = DataLoader(TensorDataset(X_train, y_train), batch_size=64, shuffle=True,
                    generator=torch.Generator().manual_seed(SEED))
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=8 * len(loader))
criterion = nn.CrossEntropyLoss(label_smoothing=0.05)
start = time.time()
epoch = 0
while epoch < 8 and time.time() - start < 250:
    model.train()
    total = 0.0
    for xb, yb in loader:
        opt.zero_grad(set_to_none=True)
        batch_loss = criterion(model(xb), yb)
        batch_loss.backward()
        opt.step()
        sched.step()
        total += batch_loss.item() * len(xb)
    epoch += 1
    print("epoch", epoch, "mean loss", total / len(X_train))
train_time = time.time() - start
''',
    EVALUATE: '''
model.eval()
correct = 0
with torch.inference_mode():
    for i in range(0, len(X_test), 1000):
        correct += (model(X_test[i:i + 1000]).argmax(1) == y_test[i:i + 1000]).sum().item()
reported_accuracy = correct / len(X_test)
''',
}


def filled(answers: dict[str, str], extra: list[str] | None = None) -> nbformat.NotebookNode:
    """The stub with each answer in its cell: the TODO comment and `...` replaced, the rest kept."""
    nb = copy.deepcopy(STUB)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for marker, code in answers.items():
            if marker in cell.source:
                if marker.startswith("def "):
                    cell.source = code.strip()
                else:
                    kept = [line for line in cell.source.splitlines()
                            if not line.startswith(("# TODO", "#   ")) and line.strip() != "..."]
                    cell.source = code.strip() + "\n" + "\n".join(kept)
    for source in extra or []:
        nb.cells.append(nbformat.v4.new_code_cell(source))
    return nb


def code_cells(nb: nbformat.NotebookNode) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "code"]


def record(name: str, nb: nbformat.NotebookNode, accuracy: float, weights: str, *, fingerprints: bool = True,
           parameters: int = 235_146) -> dict[str, Any]:
    """A graded record as grading/job.py makes it (job.py stores `code_fingerprints` of the code cells)."""
    data = nbformat.writes(nb).encode()
    parsed = parse_notebook(name, data)
    integrity = {"flags": [], "reproducible": True, "test_split_used": False, "measured_accuracy": accuracy,
                 "noisy_accuracy": accuracy - 0.01, "parameters": parameters, "weights_sha256": weights,
                 "reported_accuracy": accuracy, "runs": 2}
    question = {"name": "accuracy", "score": 10.0, "max_score": 10.0, "seconds": 0.0, "cases": []}
    result = {
        "assignment": HW, "submission": name, "filename": name, "sha256": hashlib.sha256(data).hexdigest(),
        "grader_version": "test", "grader_code": grader_code_digest(), "status": "graded", "message": None,
        "questions": [question], "cells": [], "restarts": 0, "peak_memory_mb": None, "include_hidden": True,
        "code_sha256": parsed.code_fingerprint, "integrity": integrity, "seconds": 12.0,
    }
    if fingerprints:
        result["code_fingerprints"] = code_fingerprints(parsed.code_cells)
    return result


NOTEBOOKS = {"alice.ipynb": filled(ALICE), "bob.ipynb": filled(BOB), "carol.ipynb": filled(CAROL),
             "dave.ipynb": filled(DAVE)}


@pytest.fixture(scope="module")
def latest() -> list[tuple[dict[str, Any], float]]:
    """(record, first seen) of the class, hours apart: alice first, her copies later; eve and frank are
    older grades."""
    frank = filled(ALICE | {TRAIN: "optimizer = None\ntrain_time = 1.0"})
    return [
        (record("alice.ipynb", NOTEBOOKS["alice.ipynb"], 0.975, "w-alice"), 10 * HOUR),
        (record("bob.ipynb", NOTEBOOKS["bob.ipynb"], 0.975, "w-alice"), 20 * HOUR),
        (record("carol.ipynb", NOTEBOOKS["carol.ipynb"], 0.981, "w-carol"), 15 * HOUR),
        (record("dave.ipynb", NOTEBOOKS["dave.ipynb"], 0.976, "w-dave"), 30 * HOUR),
        (record("eve.ipynb", filled(CAROL | {CONSTANTS: CAROL[CONSTANTS] + "print('mine')"}), 0.981, "w-carol",
                fingerprints=False), 40 * HOUR),
        (record("frank.ipynb", frank, 0.96, "w-frank", fingerprints=False), 5 * HOUR),
    ]


def board_of(latest: list, **kwargs: Any) -> Any:
    return build_leaderboard(HW, latest, SETTINGS, stub=STUB_PATH.read_bytes(), **kwargs)


def by_name(board: Any) -> dict[str, Any]:
    return {e.name: e for e in board.entries}


def stub_prints() -> set[int]:
    return stub_fingerprints(STUB_CELLS)


def test_a_changed_comment_is_the_same_code_and_the_original_stays_ranked(latest: list) -> None:
    assert normalise(code_cells(NOTEBOOKS["alice.ipynb"])) == normalise(code_cells(NOTEBOOKS["bob.ipynb"]))
    board = board_of(latest)
    entries = by_name(board)
    alice, bob = entries["alice.ipynb"], entries["bob.ipynb"]
    assert alice.review == ORIGINAL and alice.rank is not None
    assert bob.review == UNDER_REVIEW and bob.rank is None and bob.bonus == 0
    assert "same code as alice.ipynb" in bob.duplicates and "same weights as alice.ipynb" in bob.duplicates
    group = next(g for g in board.groups if alice in g.members)
    pair = next(p for p in group.pairs if {p.a.name, p.b.name} == {"alice.ipynb", "bob.ipynb"})
    assert pair.same_code and pair.same_weights and pair.similarity == 1.0
    assert pair.a is alice  # the earlier one first
    assert not group.order_unknown


def test_copies_that_came_in_with_one_grading_run_say_so(latest: list) -> None:
    same_run = [(rec, 1000.0 + when / HOUR) for rec, when in latest]  # seconds apart: one batch
    board = board_of(same_run)
    assert all(g.order_unknown for g in board.groups)
    assert "which one is the original is not known" in "\n".join(board.summary())


def test_another_seed_renamed_names_and_no_op_lines_are_still_a_copy(latest: list) -> None:
    alice, dave = code_cells(NOTEBOOKS["alice.ipynb"]), code_cells(NOTEBOOKS["dave.ipynb"])
    assert parse_notebook("a.ipynb", nbformat.writes(NOTEBOOKS["alice.ipynb"]).encode()).code_fingerprint != \
        parse_notebook("d.ipynb", nbformat.writes(NOTEBOOKS["dave.ipynb"]).encode()).code_fingerprint
    score = similarity(code_fingerprints(alice), code_fingerprints(dave), stub_prints())
    assert score >= THRESHOLD
    padding = "\n".join(f"print(torch.randn({i}).{op}())" for i, op in enumerate(("sum", "mean", "std") * 5))
    padded = similarity(code_fingerprints(alice), code_fingerprints([*dave, padding]), stub_prints())
    assert padded >= THRESHOLD  # extra code of one's own does not hide what was copied
    entries = by_name(board_of(latest))
    assert entries["dave.ipynb"].review == UNDER_REVIEW and entries["dave.ipynb"].rank is None
    assert any(d.startswith("similar code to alice.ipynb") for d in entries["dave.ipynb"].duplicates)
    assert entries["alice.ipynb"].review == ORIGINAL and entries["alice.ipynb"].rank is not None


def test_two_honest_students_filling_the_same_stub_are_not_similar(latest: list) -> None:
    alice = code_fingerprints(code_cells(NOTEBOOKS["alice.ipynb"]))
    carol = code_fingerprints(code_cells(NOTEBOOKS["carol.ipynb"]))
    assert similarity(alice, carol, stub_prints()) < 0.3
    # The stub is most of either notebook: counted, it alone would make them look alike.
    assert similarity(alice, carol) > similarity(alice, carol, stub_prints()) + 0.3
    board = board_of(latest)
    entries = by_name(board)
    assert entries["alice.ipynb"].rank is not None and entries["carol.ipynb"].rank is not None
    assert not any({"alice.ipynb", "carol.ipynb"} <= {e.name for e in g.members} for g in board.groups)


def test_the_untouched_stub_handed_in_twice_is_no_copy() -> None:
    blank = [(record(name, STUB, 0.1, None), when) for name, when in (("x.ipynb", 1.0), ("y.ipynb", 2.0))]
    board = board_of(blank)
    assert board.groups == [] and all(e.review is None for e in board.entries)


def test_identical_weights_under_two_names_are_under_review(latest: list) -> None:
    board = board_of(latest)
    entries = by_name(board)
    carol, eve = entries["carol.ipynb"], entries["eve.ipynb"]
    assert carol.review == ORIGINAL and carol.rank == 1
    assert eve.review == UNDER_REVIEW and eve.rank is None
    group = next(g for g in board.groups if eve in g.members)
    assert [e.name for e in group.members] == ["carol.ipynb", "eve.ipynb"]
    (pair,) = group.pairs
    assert pair.same_weights and not pair.same_code and pair.similarity is None  # eve: an older record
    assert pair.what() == "same trained weights"


def test_the_bonus_goes_to_the_right_people(latest: list) -> None:
    board = board_of(latest)
    assert [(e.name, e.bonus) for e in board.ranked] == [("carol.ipynb", 3), ("alice.ipynb", 2), ("frank.ipynb", 1)]
    assert sorted(e.name for e in board.under_review) == ["bob.ipynb", "dave.ipynb", "eve.ipynb"]
    summary = "\n".join(board.summary())
    assert "2 group(s)" in summary and "--accept NAME" in summary


def test_accept_and_reject_change_the_ranking_and_persist(latest: list, tmp_path: Path) -> None:
    store = Store(tmp_path / "results.sqlite")
    for rec, _ in sorted(latest, key=lambda item: item[1]):
        store.note_submission(HW, rec["submission"], rec["sha256"])
        store.put(rec)
    material = Material(HW, {}, {f"{HW}.ipynb": STUB_PATH.read_bytes()}, SETTINGS)
    out = tmp_path / "out"

    board = publish_leaderboard(HW, material, store, out)
    assert [e.name for e in board.ranked] == ["carol.ipynb", "alice.ipynb", "frank.ipynb"]
    assert json.loads((out / "review.json").read_text())["decisions"] == {}

    board = publish_leaderboard(HW, material, store, out, accept=["dave.ipynb"],
                                reject=[pseudonym("carol.ipynb", HW)])
    entries = by_name(board)
    assert entries["dave.ipynb"].review == ACCEPTED and entries["dave.ipynb"].rank is not None
    assert entries["carol.ipynb"].review == REJECTED and entries["carol.ipynb"].rank is None
    assert entries["eve.ipynb"].review == UNDER_REVIEW  # rejecting the original clears no copy
    review = json.loads((out / "review.json").read_text())
    assert {n: d["decision"] for n, d in review["decisions"].items()} == {"dave.ipynb": ACCEPTED,
                                                                         "carol.ipynb": REJECTED}
    assert review["decisions"]["dave.ipynb"]["sha256"] == entries["dave.ipynb"].sha256
    ranked = [(e.name, e.bonus) for e in board.ranked]

    again = publish_leaderboard(HW, material, store, out)  # no arguments: the decisions hold
    assert [(e.name, e.bonus) for e in again.ranked] == ranked
    grades = {row["file"]: row["bonus"] for row in csv.DictReader((out / "final_grades.csv").open())}
    assert {name for name, bonus in grades.items() if bonus not in ("", "0", "0.0")} == \
        {name for name, bonus in ranked if bonus}
    rows = {row["student"]: row for row in csv.DictReader((out / "leaderboard.csv").open())}
    assert rows["carol.ipynb"]["eligible"] == rows["eve.ipynb"]["eligible"] == "no"
    assert rows["dave.ipynb"]["eligible"] == "yes"
    assert json.loads((out / "review.json").read_text())["under_review"] == ["bob.ipynb", "eve.ipynb"]
    markdown = (out / "leaderboard.md").read_text()
    assert "rejected by the TA as a copy" in markdown and "accepted: ranked" in markdown

    with pytest.raises(CourseError, match="no submission 'dave'.*dave.ipynb"):
        publish_leaderboard(HW, material, store, out, accept=["dave"])
    with pytest.raises(CourseError, match="both --accept and --reject"):
        publish_leaderboard(HW, material, store, out, accept=["bob.ipynb"], reject=["bob.ipynb"])
    assert read_review(out).keys() == {"dave.ipynb", "carol.ipynb"}  # a refused call changes nothing


def test_a_decision_holds_only_for_the_content_it_was_made_on(latest: list) -> None:
    board = board_of(latest, accept=["dave.ipynb"])
    decisions = board.decisions
    resubmitted = [(rec | {"sha256": "new"}, when) if rec["submission"] == "dave.ipynb" else (rec, when)
                   for rec, when in latest]
    later = board_of(resubmitted, review=decisions)
    dave = by_name(later)["dave.ipynb"]
    assert dave.review == UNDER_REVIEW and dave in later.stale
    assert "earlier version" in "\n".join(later.summary())


def test_older_records_have_no_similarity_only_identity(latest: list) -> None:
    old = [(rec | {"code_sha256": rec["submission"]}, when) for rec, when in latest]
    old = [({k: v for k, v in rec.items() if k != "code_fingerprints"}, when) for rec, when in old]
    board = board_of(old)
    groups = [sorted(e.name for e in g.members) for g in board.groups]
    assert groups == [["alice.ipynb", "bob.ipynb"], ["carol.ipynb", "eve.ipynb"]]  # weights only
    assert by_name(board)["dave.ipynb"].review is None


def test_magics_and_cells_that_do_not_parse_are_normalised_by_tokens() -> None:
    cells = code_cells(NOTEBOOKS["alice.ipynb"])
    noisy = ["%matplotlib inline\n!pip install tqdm\n" + cells[1], *cells[2:],
             "x = !ls\nprint(x)  # shell", "def broken(:\n    return 1"]
    lines = normalise(noisy)
    assert "v1 = ! v2 ;" in lines and "print ( v1 ) ;" in lines
    assert similarity(code_fingerprints(cells), code_fingerprints(noisy), stub_prints()) >= THRESHOLD


def test_what_normalisation_removes() -> None:
    one = normalise(['import torch\nSEED = 3  # x\nunused = 5\nprint(SEED)\n"""doc"""\npass\nif False:\n    boom()\n'
                     'waste = torch.zeros(2)\n'])
    two = normalise(['import torch\n\nS0 = 17\nprint(S0)\ntorch.zeros(9)\n'])
    assert one == two == ["import torch ;", "v1 = N ;", "print ( v1 ) ;", "v1 . zeros ( N ) ;"]


def test_output_is_escaped(latest: list, tmp_path: Path) -> None:
    evil = "<img src=x onerror=alert(1)>|**x**[y](javascript:z)\x1b[31m"
    formula = "=HYPERLINK(\"http://evil\")"
    renamed = {"bob.ipynb": evil, "dave.ipynb": formula}
    hostile = [(rec | {"submission": renamed.get(rec["submission"], rec["submission"])}, when) for rec, when in latest]
    board = board_of(hostile)
    write_leaderboard(board, tmp_path)
    markdown = (tmp_path / "leaderboard.md").read_text()
    html = (tmp_path / "leaderboard.html").read_text()
    assert "## Under review" in markdown and "\\<img" in markdown and not re.search(r"(?<!\\)<img", markdown)
    assert "<img src=x" not in html and "href=\"javascript" not in html
    assert "\x1b" not in markdown and "\x1b" not in "\n".join(board.summary())
    rows = list(csv.reader((tmp_path / "leaderboard.csv").open()))
    assert all(not cell.startswith("=") for row in rows for cell in row)
    assert json.loads((tmp_path / "review.json").read_text())["under_review"]


def test_cli_accept_and_reject(latest: list, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    store = Store(tmp_path / "out" / "results.sqlite")
    for rec, _ in latest:
        store.note_submission(HW, rec["submission"], rec["sha256"])
        store.put(rec)
    settings = SETTINGS | {"leaderboard": SETTINGS["leaderboard"] | {"similarity_threshold": 0.95}}
    material = Material(HW, {}, {f"{HW}.ipynb": STUB_PATH.read_bytes()}, settings)
    monkeypatch.setattr(Material, "load", classmethod(lambda cls, assignment: material))
    args = ["--course", str(REPO), "leaderboard", HW, "--out", str(tmp_path / "out")]
    assert main([*args, "--accept", "bob.ipynb", "--accept", "eve.ipynb", "--reject", "dave.ipynb"]) == 0
    printed = capsys.readouterr().out
    assert "Under review: 0 submission(s)" in printed and "decisions in" in printed
    review = read_review(tmp_path / "out")
    assert {n: d["decision"] for n, d in review.items()} == {"bob.ipynb": ACCEPTED, "eve.ipynb": ACCEPTED,
                                                              "dave.ipynb": REJECTED}
    assert main([*args, "--reject", "nobody.ipynb"]) == 2


API = ["linear", "relu", "softmax", "mean", "sum", "view", "reshape", "argmax", "zeros", "ones", "randn", "cat",
       "stack", "matmul", "exp", "log", "clamp", "sqrt", "abs", "max", "min", "std", "norm", "dropout", "gelu",
       "tanh", "sigmoid", "flatten", "unsqueeze", "squeeze", "permute", "transpose", "float", "long", "item",
       "backward", "step", "zero_grad", "append", "extend", "pop", "sort", "index", "split", "chunk", "where"]


def generated(structure: int, naming: int) -> str:
    """A student's own code: its statements from `structure`, its names and numbers from `naming`."""
    shape, names_rng = random.Random(structure), random.Random(naming)
    names = [f"{names_rng.choice('abcdefghxyz')}{names_rng.randrange(10**6)}" for _ in range(12)]

    def name() -> str:
        return names[shape.randrange(len(names))]

    def expr(depth: int = 0) -> str:
        kind = shape.randrange(4 if depth < 2 else 2)
        if kind == 0:
            return name()
        if kind == 1:
            return str(names_rng.randrange(1000))
        if kind == 2:
            return f"{name()}.{shape.choice(API)}({expr(depth + 1)})"
        return f"({expr(depth + 1)} {shape.choice('+-*/@%')} {expr(depth + 1)})"

    lines = []
    for _ in range(shape.randrange(12, 30)):
        kind = shape.randrange(5)
        if kind < 2:
            lines.append(f"{name()} = {expr()}")
        elif kind == 2:
            lines.append(f"for {name()} in range({expr()}):\n    {name()} = {expr()}\n"
                         f"    {name()}.{shape.choice(API)}()")
        elif kind == 3:
            lines.append(f"if {name()} > {expr()}:\n    {name()} = {expr()}")
        else:
            lines.append(f"print({expr()}, {name()}.{shape.choice(API)}())")
    return "\n".join(lines)


def test_a_class_of_300_finds_exactly_the_copies_and_is_fast() -> None:
    """300 students with code of their own, and 5 renamed, renumbered copies (the stub is left out
    here: fingerprinting a whole hw4 notebook takes about 30 ms, once, in its grading job)."""
    started = time.perf_counter()
    own = {f"s{i:03}.ipynb": code_fingerprints([generated(i, i)]) for i in range(300)}
    own |= {f"copy{i:03}.ipynb": code_fingerprints([generated(i, 1000 + i)]) for i in range(0, 50, 10)}
    fingerprinting = time.perf_counter() - started
    latest = []
    for number, (name, prints) in enumerate(own.items()):
        integrity = {"flags": [], "reproducible": True, "measured_accuracy": 0.96 + (number % 30) / 1000,
                     "parameters": 1000 + number, "weights_sha256": name}
        latest.append(({"submission": name, "status": "graded", "integrity": integrity, "code_sha256": name,
                        "code_fingerprints": prints, "sha256": name}, float(number)))
    started = time.perf_counter()
    board = build_leaderboard(HW, latest, SETTINGS)
    building = time.perf_counter() - started
    print(f"\n305 submissions: fingerprints {fingerprinting:.2f} s, leaderboard {building:.3f} s")
    assert sorted([e.name for e in g.members] for g in board.groups) == \
        [[f"s{i:03}.ipynb", f"copy{i:03}.ipynb"] for i in range(0, 50, 10)]
    assert len(board.ranked) == 300 and building < 5
    assert max(len(p) for p in own.values()) < 300
