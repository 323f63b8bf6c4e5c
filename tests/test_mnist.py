"""hw4_mnist: the grader measures, re-runs and ranks; real notebooks on a small generated MNIST-like set.

Each sample of reference/hw4_mnist/samples.toml must get exactly the verdict it declares; the
leaderboard must rank the eligible ones by measured accuracy, flag copies, and pay the top 3.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import nbformat
import pytest

from autograder.authoring.samples import Edit, SampleSpec, apply_edits, load_specs, reference_notebook, sample_notebooks
from autograder.course import Course
from autograder.grading.batch import BatchOptions, grade_batch, publish_leaderboard
from autograder.grading.material import Material
from autograder.integrity.synthetic import SYNTHETIC_INTEGRITY, SYNTHETIC_LIMITS, write_synthetic_mnist
from autograder.integrity.training import eligible
from autograder.reports.leaderboard import build_leaderboard
from autograder.store import Store

HW = "hw4_mnist"
EXTRA = {  # more ways to break reproducibility than samples.toml's, each one real notebook
    "time_seed": ("SEED = 2024", "SEED = int(time.time() * 1000) % 100000"),
    "unseeded_shuffle": ("    perm = torch.randperm(n_train, generator=g)",
                         "    perm = torch.from_numpy(np.random.default_rng().permutation(n_train))"),
}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = tmp_path_factory.mktemp("data") / "MNIST" / "raw"
    write_synthetic_mnist(raw)
    return raw


@pytest.fixture(scope="module")
def graded(built_course: Course, synthetic: Path, engine_pool: Any,
           tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    assignment = built_course.assignment(HW)
    folder = tmp_path_factory.mktemp("hw4") / "class"
    folder.mkdir()
    for name, nb in sample_notebooks(assignment).items():
        nbformat.write(nb, str(folder / f"{name}.ipynb"))
    reference = reference_notebook(assignment)
    for name, (find, replace) in EXTRA.items():
        nb = apply_edits(reference, SampleSpec(name, name, edits=(Edit(find, replace),)), folder)
        nbformat.write(nb, str(folder / f"{name}.ipynb"))
    shutil.copy(folder / "honest_small_mlp.ipynb", folder / "copied_by_someone_else.ipynb")
    other_seed = apply_edits(reference, SampleSpec("honest_other_seed", "", edits=(Edit("SEED = 2024", "SEED = 7"),)),
                             folder)
    nbformat.write(other_seed, str(folder / "honest_other_seed.ipynb"))
    out = folder.parent / "out"
    store = Store(folder.parent / "results.sqlite")
    options = BatchOptions(overrides=SYNTHETIC_LIMITS, integrity_overrides=SYNTHETIC_INTEGRITY, jobs=2,
                           progress=False, data_dir=synthetic)
    outcome = grade_batch(assignment, [folder], out, store, options, executor=engine_pool)
    records = {Path(r["submission"]).stem: r for r in outcome.records}
    return {"records": records, "out": out, "store": store, "assignment": assignment}


SPECS = {spec.name: spec for spec in load_specs(Course(Path(__file__).resolve().parents[1]).assignment(HW))}


@pytest.mark.parametrize("name", sorted(set(SPECS) - {"blank"}))
def test_each_sample_gets_its_verdict(graded: dict, name: str) -> None:
    record = graded["records"][name]
    assert record["status"] == "graded", record["message"]
    integrity = record["integrity"]
    expect = SPECS[name].expect or {"eligible": True, "reasons": []}
    assert set(integrity["flags"]) == set(expect["reasons"]), (name, integrity)
    assert eligible(integrity) == expect["eligible"]
    tests = {q["name"]: q for q in record["questions"]}
    assert tests["q1"]["score"] == tests["q1"]["max_score"] and tests["q2"]["score"] == tests["q2"]["max_score"]


def test_blank_stub_gets_nothing(graded: dict) -> None:
    record = graded["records"]["blank"]
    assert sum(q["score"] for q in record["questions"]) == 0
    assert "no_model" in record["integrity"]["flags"]


def test_accuracy_is_measured_by_the_grader_not_taken_from_the_notebook(graded: dict) -> None:
    """What a notebook reports is checked against its model on the stand-in test files it saw; the
    accuracy that counts is the grader's, on the real test split."""
    honest, liar = graded["records"]["reference"], graded["records"]["reports_wrong_accuracy"]
    assert honest["integrity"]["reported_accuracy"] == pytest.approx(honest["integrity"]["standin_accuracy"],
                                                                     abs=1e-9)
    assert liar["integrity"]["reported_accuracy"] == round(liar["integrity"]["standin_accuracy"] + 0.01, 4)
    assert liar["integrity"]["measured_accuracy"] == honest["integrity"]["measured_accuracy"]
    assert honest["integrity"]["runs"] == 2  # reproducible and test-clean: one extra run, not two


@pytest.mark.parametrize("name", sorted(EXTRA))
def test_unreproducible_seeding_is_caught(graded: dict, name: str) -> None:
    integrity = graded["records"][name]["integrity"]
    assert integrity["flags"] == ["not_reproducible"] and integrity["runs"] == 3


def test_training_on_the_test_split_is_told_apart_from_bad_seeding(graded: dict) -> None:
    integrity = graded["records"]["trains_on_test"]["integrity"]
    assert integrity["reproducible"] is True and integrity["test_split_used"] is True
    assert integrity["third_weights_sha256"] == integrity["weights_sha256"] != integrity["second_weights_sha256"]


def test_leaderboard_ranks_the_eligible_and_pays_the_top_three(graded: dict) -> None:
    out: Path = graded["out"]
    rows = list(csv.DictReader((out / "leaderboard.csv").open()))
    ranked = [r for r in rows if r["rank"]]
    accuracies = [float(r["accuracy"]) for r in ranked]
    assert accuracies == sorted(accuracies, reverse=True) and len(ranked) >= 3
    eligible_names = {n for n, s in SPECS.items() if s.expect and s.expect["eligible"]} | {"honest_other_seed"}
    ranked_names = {Path(r["student"]).stem for r in ranked}
    # Possible copies go to the TA: one of each group stays ranked (an original is never removed by
    # its copy), the others wait under review, listed, until the TA accepts or rejects them.
    pair = {"honest_small_mlp", "copied_by_someone_else"}
    assert ranked_names <= eligible_names | {"copied_by_someone_else"} and len(ranked_names & pair) == 1
    assert eligible_names - ranked_names <= pair | {"reference"}
    review = (out / "leaderboard.md").read_text().split("## Under review", 1)[1].split("## Not ranked")[0]
    assert all(name in review for name in pair | {"reference", "reports_wrong_accuracy", "over_budget"})
    copies = {Path(r["student"]).stem: r["flags"] for r in rows if "same" in r["flags"]}
    # A copy, and the reference whose weights two samples share (they train identically, then cheat).
    assert set(copies) == {"honest_small_mlp", "copied_by_someone_else", "reference", "reports_wrong_accuracy",
                           "over_budget"}
    assert "same weights" in copies["reference"] and "same code" not in copies["reference"]
    grades = list(csv.DictReader((out / "final_grades.csv").open()))
    bonus = {Path(g["file"]).stem: float(g["bonus"]) for g in grades[1:]}
    top = [Path(r["student"]).stem for r in ranked[:3]]
    assert [bonus[name] for name in top] == [3.0, 2.0, 1.0]
    assert sum(bonus.values()) == 6.0
    result = json.loads(next((out / "results").glob(f"*{top[0]}.ipynb.json")).read_text())
    assert {entry["name"] for entry in result["leaderboard"]} >= {"Accuracy (%)", "Parameters"}
    for suffix in ("md", "html", "png"):
        assert (out / f"leaderboard.{suffix}").stat().st_size > 500


def test_leaderboard_command_with_pseudonyms(graded: dict, tmp_path: Path) -> None:
    material = Material.load(graded["assignment"])
    board = publish_leaderboard(HW, material, graded["store"], tmp_path, pseudonyms=True)
    text = (tmp_path / "leaderboard.md").read_text()
    assert board.ranked and all(e.shown_as.startswith("student-") for e in board.entries)
    assert "honest" not in text and "reference" not in text


def test_tie_break_is_fewer_parameters_then_earlier_submission() -> None:
    def record(name: str, accuracy: float, parameters: int) -> dict:
        integrity = {"flags": [], "reproducible": True, "measured_accuracy": accuracy, "parameters": parameters,
                     "weights_sha256": name}
        return {"submission": name, "status": "graded", "integrity": integrity, "code_sha256": name}

    latest = [(record("late_small", 0.98, 1000), 20.0), (record("early_small", 0.98, 1000), 10.0),
              (record("big", 0.98, 5000), 1.0), (record("best", 0.99, 9000), 30.0), (record("fifth", 0.97, 10), 0.0)]
    board = build_leaderboard(HW, latest, {"leaderboard": {"top_k": 3, "bonus": [5, 3, 1]}})
    assert [e.name for e in board.ranked] == ["best", "early_small", "late_small", "big", "fifth"]
    assert [e.bonus for e in board.ranked] == [5, 3, 1, 0, 0]


def test_thread_count_changes_the_weights(built_course: Course, synthetic: Path, tmp_path: Path) -> None:
    """Why the grader pins threads: the same seeded notebook, 1 thread against 2, other weights."""
    from autograder.grading.job import GradingJob, _data_views, _export, _run, _standin
    from autograder.intake.notebook import parse_notebook
    from autograder.sandbox.limits import Limits

    assignment = built_course.assignment(HW)
    material = Material.load(assignment)
    path = tmp_path / "reference.ipynb"
    nbformat.write(reference_notebook(assignment), str(path))
    code = parse_notebook(path.name, path.read_bytes()).code_cells
    hashes = []
    for threads in (1, 2):
        limits = Limits(**(material.settings["limits"] | SYNTHETIC_LIMITS | {"threads": threads}))
        job = GradingJob(HW, path.name, path.name, path.read_bytes(), {}, material.home_files, limits.to_dict(), "x",
                         integrity=material.integrity, data_dir=str(synthetic))
        views = _data_views(synthetic, _standin(synthetic, tmp_path, "a secret", 1))
        hashes.append(_run(job, limits, code, views, _export(material.integrity)).value.weights)
    assert None not in hashes and hashes[0] != hashes[1]


def test_a_run_past_its_cpu_budget_is_stopped_there(graded: dict) -> None:
    """over_budget's endless loop is stopped once the kernel's CPU time passes the budget (not at
    the cell's clock limit), and its later cells still run: the verdict costs about the budget."""
    record = graded["records"]["over_budget"]
    statuses = [cell["status"] for cell in record["cells"]]
    assert statuses.count("budget") == 1 and "timeout" not in statuses, statuses
    after = statuses[statuses.index("budget") + 1:]
    assert after and all(status in ("ok", "error") for status in after), statuses
    budget = SYNTHETIC_INTEGRITY["budget_cpu_seconds"]  # CPU seconds: the machine's load does not move them
    assert budget < record["integrity"]["cpu_seconds"] < budget + 10, record["integrity"]
