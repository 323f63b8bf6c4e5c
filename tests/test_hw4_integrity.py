"""hw4 attacked by students who have read the grader: real notebooks on the generated MNIST-like set.

Each notebook is the reference with a hostile (or unlucky) edit, graded in one batch with the
synthetic settings; each must get exactly the verdict below. The real test split never enters the
sandbox (every run shows a stand-in), so what a notebook learns from its test files only makes its
weights differ from run to run; what persists nowhere cannot be carried between runs; what the
machine's speed does to one run is inconclusive, never a verdict; the budget is CPU time.
"""

from __future__ import annotations

import hashlib
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pytest

from autograder.authoring.samples import Edit, SampleSpec, apply_edits, reference_notebook
from autograder.course import Course
from autograder.grading.batch import BatchOptions, grade_batch
from autograder.integrity import mnist
from autograder.integrity.synthetic import SYNTHETIC_INTEGRITY, SYNTHETIC_LIMITS, write_synthetic_mnist
from autograder.integrity.training import (
    BELOW,
    CONV_LIKE,
    INCONCLUSIVE,
    MISMATCH,
    NO_MODEL,
    NON_FINITE,
    OVER_BUDGET,
    USES_TEST,
    eligible,
)
from autograder.store import Store

pytestmark = pytest.mark.kernel

HW = "hw4_mnist"
MEAN_LINE = "MEAN = float(train_images.mean()) / 255.0\nSTD = float(train_images.std()) / 255.0"
TRAIN_LINE = "n_train = len(X_train)"
REPORT_LINE = "reported_accuracy = test_accuracy"
SECRET = "a secret the test chooses, so that it knows which stand-in each run shows"

ATTACKS: dict[str, tuple[list[tuple[str, str]], set[str]]] = {
    # Statistics over train + test do not depend on the order of the test images: a permuted decoy
    # could not see them; different stand-ins do.
    "normalises_with_test_statistics": ([(MEAN_LINE, (
        "both = np.concatenate([train_images, test_images])\n"
        "MEAN = float(both.mean()) / 255.0\nSTD = float(both.std()) / 255.0"))], {USES_TEST}),
    # Transductive learning on the test images in a canonical (sorted) order.
    "pseudo_labels_sorted_test_images": ([(REPORT_LINE, (
        "order = np.lexsort(test_images.reshape(len(test_images), -1).T)\n"
        "with torch.no_grad():\n    pseudo = model(X_test[order]).argmax(dim=1)\n"
        "model.train()\noptimizer.zero_grad()\ncriterion(model(X_test[order]), pseudo).backward()\noptimizer.step()\n"
        "model.eval()\nwith torch.no_grad():\n    test_accuracy = accuracy(model(X_test), y_test)\n"
        "reported_accuracy = test_accuracy"))], {USES_TEST}),
    # Trains on its test files, keeps the weights everywhere it can, and loads them when it finds
    # them, so that a later run would look reproducible.
    "carries_weights_between_runs": ([(TRAIN_LINE, (
        "import glob, pickle\nSTASHES = ['/tmp/w.pt', os.path.expanduser('~/w.pt'), '/dev/shm/w.pt']\n"
        "found = [p for p in STASHES if os.path.exists(p)]\n"
        "X_train = torch.cat([X_train, X_test])\ny_train = torch.cat([y_train, y_test])\n"
        "n_train = len(X_train)")),
        ("train_time = time.perf_counter() - t0", (
            "if found:\n    model.load_state_dict(torch.load(found[0]))\n"
            "for p in STASHES:\n    try:\n        torch.save(model.state_dict(), p)\n"
            "    except OSError:\n        pass\n"
            "train_time = time.perf_counter() - t0"))], {USES_TEST}),
    # Finds out that its test files are a stand-in (they are training images) and looks for the
    # real ones everywhere: it finds none, trains honestly, and says so.
    "looks_for_the_real_test_split": ([(REPORT_LINE, (
        "train_keys = {bytes(image) for image in train_images}\n"
        "standin = all(bytes(image) in train_keys for image in test_images[:50])\n"
        "elsewhere = []\nfor d, dirs, files in os.walk('/'):\n"
        "    dirs[:] = [x for x in dirs if d != '/' or x not in ('proc', 'sys', 'dev')]\n"
        "    elsewhere += [f for f in files if f.startswith('t10k') and not d.startswith(str(DATA_DIR))]\n"
        "reported_accuracy = test_accuracy if standin and not elsewhere else 0.0"))], set()),
    "reports_nan": ([(REPORT_LINE, "reported_accuracy = float('nan')")], {NON_FINITE, MISMATCH}),
    # Trains on in a thread after the last cell and holds the grader's first request until done:
    # the kernel's CPU time up to the grader's last request counts.
    "trains_in_the_background": ([(REPORT_LINE, (
        "reported_accuracy = test_accuracy\nimport threading\n"
        "def more_training():\n    while time.thread_time() < 20:\n        pass\n"
        "worker = threading.Thread(target=more_training, daemon=True)\nworker.start()\n"
        "def hold(info):\n    if info.raw_cell.startswith('__autograder_handle('):\n        worker.join()\n"
        "get_ipython().events.register('pre_run_cell', hold)"))], {OVER_BUDGET}),
    # A CNN handed in as its exact dense equivalent: a convolution unrolled into a Linear layer.
    "convolution_as_a_dense_layer": ([(REPORT_LINE, (
        "conv = nn.Conv2d(1, 4, kernel_size=5, stride=2, padding=2)\n"
        "with torch.no_grad():\n"
        "    basis = torch.eye(784).view(784, 1, 28, 28)\n"
        "    columns = (conv(basis) - conv(torch.zeros(1, 1, 28, 28))).reshape(784, 784)\n"
        "    dense = nn.Linear(784, 784)\n"
        "    dense.weight.copy_(columns.T)\n"
        "    dense.bias.copy_(conv.bias.repeat_interleave(196))\n"
        "model = nn.Sequential(dense, nn.ReLU(), *model)\nmodel.eval()\n"
        "with torch.no_grad():\n    test_accuracy = accuracy(model(X_test), y_test)\n"
        "reported_accuracy = test_accuracy"))], {CONV_LIKE, BELOW}),
    # An allowed MLP that reuses one big layer, as costly as the caps allow: evaluated in the
    # grader's child process within its own CPU limit (tests/test_evaluation.py stops one that is not).
    "costly_to_evaluate": ([(REPORT_LINE, (
        "class Costly(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.first, self.middle = nn.Linear(784, 2000), nn.Linear(2000, 2000)\n"
        "        self.last = nn.Linear(2000, 10)\n"
        "    def forward(self, x):\n"
        "        x = self.first(x)\n"
        "        for _ in range(4):\n"
        "            x = torch.relu(self.middle(x))\n"
        "        return self.last(x)\n"
        "model = Costly().eval()\n"
        "with torch.no_grad():\n    test_accuracy = accuracy(model(X_test), y_test)\n"
        "reported_accuracy = test_accuracy"))], {BELOW}),
    # A forward pass whose intermediate values would take GBs on the grader's side.
    "memory_hungry_forward": ([(REPORT_LINE, (
        "class Outer(nn.Module):\n"
        "    def __init__(self, inner):\n"
        "        super().__init__()\n"
        "        self.inner = inner\n"
        "    def forward(self, x):\n"
        "        return self.inner(x) + (x.unsqueeze(2) * x.unsqueeze(1)).flatten(1)[:, :10]\n"
        "model = Outer(model).eval()\n"
        "with torch.no_grad():\n    test_accuracy = accuracy(model(X_test), y_test)\n"
        "reported_accuracy = test_accuracy"))], {NO_MODEL}),
}


def _slow_in_run_two(raw: Path) -> list[tuple[str, str]]:
    """An honest notebook whose monitoring hangs on the test files of run 2 only (a value found by
    building the stand-ins of runs 1 and 2 for SECRET): the clock stops run 2, which is no verdict."""
    with tempfile.TemporaryDirectory() as tmp:
        labels = []
        for run in (1, 2):
            mnist.write_standin_test(raw, Path(tmp) / str(run), SECRET, run)
            labels.append(mnist.read_idx(Path(tmp) / str(run) / mnist.TEST_LABELS))
    index = int(np.flatnonzero(labels[0] != labels[1])[0])
    return [(REPORT_LINE, (f"reported_accuracy = test_accuracy\nif test_labels[{index}] == {int(labels[1][index])}:\n"
                           "    time.sleep(10**6)  # stands for monitoring code that is slow on some data"))]


@pytest.fixture(scope="module")
def graded(built_course: Course, engine_pool: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("hw4-integrity")
    raw = work / "data" / "MNIST" / "raw"
    write_synthetic_mnist(raw)
    assignment = built_course.assignment(HW)
    reference = reference_notebook(assignment)
    folder = work / "class"
    folder.mkdir()
    edits = {name: attack[0] for name, attack in ATTACKS.items()}
    edits["slow_monitoring_in_run_two"] = _slow_in_run_two(raw)
    for name, pairs in edits.items():
        spec = SampleSpec(name, name, edits=tuple(Edit(find, replace) for find, replace in pairs))
        nbformat.write(apply_edits(reference, spec, folder), str(folder / f"{name}.ipynb"))
    nbformat.write(reference, str(folder / "reference.ipynb"))
    store = Store(work / "results.sqlite")
    with sqlite3.connect(store.path) as db:  # the grader's secret, chosen here: see _slow_in_run_two
        for path in folder.glob("*.ipynb"):
            db.execute("INSERT INTO secrets VALUES (?, ?, ?)", (HW, hashlib.sha256(path.read_bytes()).hexdigest(),
                                                                 SECRET))
    options = BatchOptions(overrides=SYNTHETIC_LIMITS, integrity_overrides=SYNTHETIC_INTEGRITY, jobs=2,
                           progress=False, data_dir=raw)
    outcome = grade_batch(assignment, [folder], work / "out", store, options, executor=engine_pool)
    return {Path(r["submission"]).stem: r for r in outcome.records}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_each_attack_gets_its_verdict(graded: dict[str, Any], name: str) -> None:
    record = graded[name]
    assert record["status"] == "graded", record["message"]
    integrity = record["integrity"]
    assert set(integrity["flags"]) == ATTACKS[name][1], integrity
    assert eligible(integrity) == (not ATTACKS[name][1])


def test_the_test_split_it_trains_on_gains_it_nothing(graded: dict[str, Any]) -> None:
    honest = graded["reference"]["integrity"]
    for name in ("carries_weights_between_runs", "normalises_with_test_statistics"):
        cheat = graded[name]["integrity"]
        assert cheat["test_split_used"] is True and cheat["runs"] == 3
        assert cheat["weights_sha256"] == cheat["third_weights_sha256"] != cheat["second_weights_sha256"]
    assert honest["reproducible"] is True and honest["runs"] == 2


def test_a_run_stopped_by_the_clock_is_inconclusive_not_a_verdict(graded: dict[str, Any]) -> None:
    record = graded["slow_monitoring_in_run_two"]
    integrity = record["integrity"]
    assert integrity["flags"] == [INCONCLUSIVE] and integrity["reproducible"] is None
    assert "clock" in integrity["inconclusive"]
    scores = {q["name"]: q["score"] for q in record["questions"]}
    maxima = {q["name"]: q["max_score"] for q in record["questions"]}
    assert scores["accuracy"] == maxima["accuracy"] and scores["reproducibility"] == 0  # run 1 was complete


def test_the_budget_counts_the_kernels_cpu_time(graded: dict[str, Any]) -> None:
    background = graded["trains_in_the_background"]["integrity"]
    honest = graded["reference"]["integrity"]
    assert background["budget_clock"] == honest["budget_clock"] == "cpu"
    assert background["cpu_seconds"] > SYNTHETIC_INTEGRITY["budget_cpu_seconds"] > honest["cpu_seconds"]

