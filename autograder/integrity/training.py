"""What the grader concludes about a trained model from up to three runs of the same notebook.

The real test split never enters the sandbox. Every run shows the notebook a stand-in test split
(training images in the test files' place, chosen by a secret of the grader's: mnist.write_standin_test),
a different one in runs 1 and 2. The grader measures run 1's model itself, on the real test split.
Under a fixed seed and pinned threads an honest notebook trains bit-identical weights in both runs:
reproducible, and its test files played no part. If the weights differ, run 3 (run 1's stand-in
again) tells which: identical to run 1 means training depended on the test files; different means
training does not reproduce under the student's seed. Only complete runs are compared: a run that a
clock limit stopped, or that ran differently (another cell failed), makes the verdict inconclusive,
never "uses test data".

The budget counts the kernel's CPU time (its cgroup, threads and children included, from its
start to the grader's last request), so machine load changes no verdict; where no cgroup tells it
(containers, Gradescope) the notebook's cells' wall-clock time is used instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autograder.integrity import mnist, structure
from autograder.integrity.evaluation import EvaluationLimits, evaluate
from autograder.integrity.model_export import ModelFailed, architecture, parameter_count, weights_hash

BELOW, NOT_REPRODUCIBLE, USES_TEST = "below_threshold", "not_reproducible", "uses_test_data"
MISMATCH, NOT_MLP, OVER_BUDGET = "reported_accuracy_mismatch", "not_an_mlp", "over_budget"
NO_MODEL, LOOKUP, INCONCLUSIVE = "no_model", "lookup_suspected", "inconclusive"
NON_FINITE, CONV_LIKE = "non_finite", "convolution_like_weights"
EXPLAIN = {
    BELOW: "the accuracy the grader measured is below the threshold",
    NOT_REPRODUCIBLE: "training under your seed did not give the same weights twice (seed every source of "
                      "randomness: torch, numpy, random, the shuffling generator; no time-based seeds)",
    USES_TEST: "the trained weights changed when the test files changed: training or tuning used the test split",
    MISMATCH: "the accuracy your notebook reports differs from the one its model has on the test files it saw",
    NOT_MLP: "the model is not an MLP built from the allowed layers",
    OVER_BUDGET: "the notebook used more than its CPU time budget",
    NO_MODEL: "the grader could not get a trained model out of the notebook",
    LOOKUP: "accuracy collapses on lightly perturbed test images (a lookup table, not a model?)",
    NON_FINITE: "NaN or infinite numbers in the weights, MEAN, STD or the reported accuracy",
    CONV_LIKE: "a dense layer's weights have the structure of a convolution (the course staff will review it)",
    INCONCLUSIVE: "inconclusive (a grading run was stopped by a clock limit or ran differently; the machine's "
                  "fault, not necessarily yours): the course staff will grade it again",
}
# Cell outcomes a limit imposed (the clock, or the CPU budget stopping a run that has used it up):
# a run that ends so is no evidence either way.
CLOCK_STOPS = ("timeout", "skipped", "budget")
RERUN_CPU_FACTOR = 1.5  # runs 2 and 3 are stopped at this many times the budget (run 1: at the budget)
MAX_TEXT = 200  # characters of a non-number the notebook reported that a record keeps


@dataclass
class RunExport:
    """What one run left behind, as plain data."""

    export: dict[str, Any] | None = None  # {"graph": [...], "state": {name: array}}
    names: dict[str, Any] = field(default_factory=dict)  # SEED, MEAN, STD, reported_accuracy
    error: str | None = None
    cells: list[str] = field(default_factory=list)  # each code cell's outcome: ok, error, timeout, ...
    seconds: float = 0.0  # how long the notebook's cells ran (wall clock)
    cpu_seconds: float | None = None  # the kernel's CPU time up to the grader's last request

    @property
    def weights(self) -> str | None:
        return weights_hash(self.export.get("state")) if isinstance(self.export, dict) and self.export else None

    @property
    def stopped_by_clock(self) -> bool:
        return any(status in CLOCK_STOPS for status in self.cells)


def over_budget(run: RunExport, settings: dict[str, Any]) -> tuple[bool, str]:
    """Whether run 1 used more than its budget, and by which clock that was decided."""
    if run.cpu_seconds is not None:
        return run.cpu_seconds > settings["budget_cpu_seconds"], "cpu"
    return run.seconds > settings["budget_seconds"] or run.stopped_by_clock, "wall"


def _reported(value: Any) -> Any:
    """What the record keeps of the reported accuracy: a number, or a short text of anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None if value is None else str(value)[:MAX_TEXT]
    return float(value)


def measure(run: RunExport, raw: Path, standin: Path, settings: dict[str, Any], seed: int) -> dict[str, Any]:
    """Run 1's model rebuilt here and measured: on the real test split, on a perturbed copy, and on
    the stand-in the notebook saw (what it should have reported)."""
    result: dict[str, Any] = {"flags": [], "reported_accuracy": _reported(run.names.get("reported_accuracy")),
                              "notebook_seconds": round(run.seconds, 2)}
    if run.cpu_seconds is not None:
        result["cpu_seconds"] = round(run.cpu_seconds, 2)
    over, clock = over_budget(run, settings)
    result["budget_clock"] = clock
    if over:
        result["flags"].append(OVER_BUDGET)
    elif run.stopped_by_clock:
        result["flags"].append(INCONCLUSIVE)
        result["inconclusive"] = "run 1 was stopped by a clock limit before it used its CPU budget"
    if run.export is None:
        if INCONCLUSIVE not in result["flags"]:
            result["flags"].append(NO_MODEL)
        result["error"] = run.error
        return result
    export = run.export if isinstance(run.export, dict) else {}  # the student's kernel wrote it: any data
    result["architecture"] = architecture(export.get("graph"))
    result["parameters"] = parameter_count(export.get("state"))
    result["weights_sha256"] = run.weights
    problems = [structure.non_finite(export.get("state") or {}, run.names),
                structure.convolution_like(export.get("state") or {}, export.get("graph"))]
    if problems[0]:
        result["flags"].append(NON_FINITE)
    if problems[1]:
        result["flags"].append(CONV_LIKE)
    result["weights_review"] = [p for p in problems if p] or None
    try:
        mean, std = _normalisation(run.names)
    except ModelFailed as error:
        result["flags"].append(NO_MODEL)
        result["error"] = f"the model could not be evaluated: {error}"
        return result
    # The perturbed copy of the real test split is the grader's own file, next to the stand-ins.
    perturbed = standin.parent / "perturbed"
    perturbed.mkdir(exist_ok=True)
    mnist.write_idx(perturbed / mnist.TEST_IMAGES, mnist.perturbed(mnist.read_idx(raw / mnist.TEST_IMAGES), seed))
    splits = {"test": (raw / mnist.TEST_IMAGES, raw / mnist.TEST_LABELS),
              "noisy": (perturbed / mnist.TEST_IMAGES, raw / mnist.TEST_LABELS),
              "standin": (standin / mnist.TEST_IMAGES, standin / mnist.TEST_LABELS)}
    limits = EvaluationLimits(cpu_seconds=int(settings["evaluation_cpu_seconds"]),
                              memory_mb=int(settings["evaluation_memory_mb"]))
    evaluation = evaluate(run.export, mean, std, splits, limits)  # a child process with limits of its own
    if evaluation.kind == "not_an_mlp":
        result["flags"].append(NOT_MLP)
        result["error"] = evaluation.error
        return result
    if evaluation.kind == "failed" or evaluation.limit in ("cpu", "memory"):
        result["flags"].append(NO_MODEL)
        result["error"] = f"the model could not be evaluated: {evaluation.error}"
        return result
    if not evaluation.ok:  # crashed or starved: not shown to be the model's doing
        result["flags"].append(INCONCLUSIVE)
        result["inconclusive"] = f"run 1's model: its evaluation stopped ({evaluation.limit})"
        return result
    measured, noisy, seen = (evaluation.accuracies[name] for name in ("test", "noisy", "standin"))
    result["measured_accuracy"], result["noisy_accuracy"], result["standin_accuracy"] = measured, noisy, seen
    if measured < settings["threshold"]:
        result["flags"].append(BELOW)
    if measured - noisy > settings["max_noise_drop"]:
        result["flags"].append(LOOKUP)
    reported = result["reported_accuracy"]
    off = not isinstance(reported, float) or not math.isfinite(reported) or \
        abs(reported - seen) > settings["report_tolerance"]
    if off and not run.stopped_by_clock:  # a notebook stopped early may not have reported yet
        result["flags"].append(MISMATCH)
    return result


def _normalisation(names: dict[str, Any]) -> tuple[float, float]:
    try:
        mean, std = float(names["MEAN"]), float(names["STD"])
    except (KeyError, TypeError, ValueError, RuntimeError):  # RuntimeError: a tensor of many values
        raise ModelFailed("MEAN and STD must be numbers") from None
    if not (math.isfinite(mean) and math.isfinite(std)) or std == 0:
        raise ModelFailed("MEAN and STD must be finite numbers, STD not 0")
    return mean, std


def _differently(first: RunExport, other: RunExport) -> str | None:
    """Why two runs cannot be compared, or None when both are complete and ran alike."""
    if other.stopped_by_clock:
        return "a later run was stopped by a clock limit"
    if other.cells != first.cells:
        changed = [i for i, (a, b) in enumerate(zip(first.cells, other.cells, strict=False)) if a != b]
        where = f" (cell {changed[0] + 1}: {first.cells[changed[0]]}, then {other.cells[changed[0]]})" \
            if changed else ""
        return f"a later run ran differently{where}"
    if other.weights is None:
        return "a later run gave no model"
    return None


def compare_runs(first: RunExport, second: RunExport, third: RunExport | None) -> dict[str, Any]:
    """The verdict of runs 1 and 2 (different stand-ins) and, when they differ, run 3 (run 1's)."""
    result: dict[str, Any] = {"second_weights_sha256": second.weights}
    problem = _differently(first, second)
    if problem is None and second.weights == first.weights:
        result["reproducible"], result["test_split_used"] = True, False
        return result
    if problem is None and third is not None:
        result["third_weights_sha256"] = third.weights
        problem = _differently(first, third)
        if problem is None:
            used = third.weights == first.weights
            result["reproducible"], result["test_split_used"] = used, (True if used else None)
            result["flags"] = [USES_TEST if used else NOT_REPRODUCIBLE]
            return result
    result["reproducible"], result["test_split_used"] = None, None
    result["flags"] = [INCONCLUSIVE]
    result["inconclusive"] = problem or "run 3 was not made"
    return result


def integrity_questions(integrity: dict[str, Any], settings: dict[str, Any]) -> list[dict[str, Any]]:
    """The grader's own checks as questions, so grade sheets and feedback treat them like tests."""
    flags = set(integrity["flags"])
    measured = integrity.get("measured_accuracy")
    threshold = settings["threshold"]
    run1_stopped = INCONCLUSIVE in flags and str(integrity.get("inconclusive", "")).startswith("run 1")
    accuracy_ok = (measured is not None and measured >= threshold and not run1_stopped
                   and not flags & {NOT_MLP, OVER_BUDGET, USES_TEST})
    if measured is None:
        reason = INCONCLUSIVE if run1_stopped else NOT_MLP if NOT_MLP in flags else NO_MODEL
        accuracy_message = EXPLAIN[reason] + (f": {integrity['error']}" if integrity.get("error") else "")
    else:
        accuracy_message = f"measured {100 * measured:.2f} % on the test set (needs {100 * threshold:g} %)"
        for flag in (OVER_BUDGET, USES_TEST, MISMATCH, LOOKUP, INCONCLUSIVE):
            if flag in flags:
                accuracy_message += f"; {EXPLAIN[flag]}"
    reproducible = bool(integrity.get("reproducible")) and USES_TEST not in flags
    if INCONCLUSIVE in flags:
        repro_message = f"{EXPLAIN[INCONCLUSIVE]} ({integrity.get('inconclusive', '')})"
    elif integrity.get("reproducible") is None:
        repro_message = "not checked: " + (EXPLAIN[NO_MODEL] if NO_MODEL in flags else "no comparable model")
    elif reproducible:
        repro_message = "a second run under your seed, with other test files, trained bit-identical weights"
    else:
        repro_message = EXPLAIN[USES_TEST if USES_TEST in flags else NOT_REPRODUCIBLE]

    def question(name: str, points: float, passed: bool, case: str, message: str) -> dict[str, Any]:
        return {"name": name, "score": points if passed else 0.0, "max_score": points, "seconds": 0.0,
                "cases": [{"name": case, "hidden": False, "points": points if passed else 0.0,
                           "max_points": points, "passed": passed, "message": message, "student_traceback": ""}]}

    return [
        question("accuracy", settings["points_accuracy"], accuracy_ok, "test accuracy measured by the grader",
                 accuracy_message),
        question("reproducibility", settings["points_reproducible"], reproducible,
                 "same weights when trained again under your seed", repro_message),
    ]


def eligible(integrity: dict[str, Any]) -> bool:
    return not integrity["flags"] and integrity.get("reproducible") is True
