"""What the grader concludes about a trained model from up to three runs of the same notebook.

Run 1 sees the real data; run 2 sees a decoy test split (same images in another order, labels
shuffled). Under a fixed seed and pinned threads an honest notebook trains bit-identical weights in
both: reproducible, and the test split played no part. If the weights differ, run 3 (real data
again) tells which it was: identical to run 1 means training depended on the test split; different
means training does not reproduce under the student's seed. One extra run for honest students, two
for flagged ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autograder.integrity import mnist
from autograder.integrity.model_export import (
    GraphModel,
    ModelFailed,
    NotAnMLP,
    architecture,
    parameter_count,
    weights_hash,
)

BELOW, NOT_REPRODUCIBLE, USES_TEST = "below_threshold", "not_reproducible", "uses_test_data"
MISMATCH, NOT_MLP, OVER_BUDGET = "reported_accuracy_mismatch", "not_an_mlp", "over_budget"
NO_MODEL, LOOKUP = "no_model", "lookup_suspected"
EXPLAIN = {
    BELOW: "the accuracy the grader measured is below the threshold",
    NOT_REPRODUCIBLE: "training under your seed did not give the same weights twice (seed every source of "
                      "randomness: torch, numpy, random, the shuffling generator; no time-based seeds)",
    USES_TEST: "the trained weights changed when the test split changed: training or tuning used the test split",
    MISMATCH: "the accuracy your notebook reports differs from the one the grader measured",
    NOT_MLP: "the model is not an MLP built from the allowed layers",
    OVER_BUDGET: "the notebook did not finish within the time budget",
    NO_MODEL: "the grader could not get a trained model out of the notebook",
    LOOKUP: "accuracy collapses on lightly perturbed test images (a lookup table, not a model?)",
}


@dataclass
class RunExport:
    """What one run left behind, as plain data."""

    export: dict[str, Any] | None = None  # {"graph": [...], "state": {name: array}}
    names: dict[str, Any] = field(default_factory=dict)  # SEED, MEAN, STD, reported_accuracy
    error: str | None = None
    over_budget: bool = False  # a cell was stopped, or the notebook ran out of time
    seconds: float = 0.0  # how long the notebook's cells ran

    @property
    def weights(self) -> str | None:
        return weights_hash(self.export.get("state")) if isinstance(self.export, dict) and self.export else None


def measure(run: RunExport, raw: Path, settings: dict[str, Any], seed: int) -> dict[str, Any]:
    """Rebuild run 1's model here and measure it on the real test split."""
    result: dict[str, Any] = {"flags": [], "reported_accuracy": run.names.get("reported_accuracy"),
                              "notebook_seconds": round(run.seconds, 2)}
    if run.over_budget or run.seconds > settings["budget_seconds"]:
        result["flags"].append(OVER_BUDGET)
    if run.export is None:
        result["flags"].append(NO_MODEL)
        result["error"] = run.error
        return result
    export = run.export if isinstance(run.export, dict) else {}  # the student's kernel wrote it: any data
    result["architecture"] = architecture(export.get("graph"))
    result["parameters"] = parameter_count(export.get("state"))
    result["weights_sha256"] = run.weights
    # The grader's own files: an error reading them is the grader's, and its message (paths) stays here.
    images, labels = mnist.read_idx(raw / mnist.TEST_IMAGES), mnist.read_idx(raw / mnist.TEST_LABELS)
    try:
        model = GraphModel(run.export)
        mean, std = _normalisation(run.names)
        measured = mnist.accuracy(model, images, labels, mean, std)
        noisy = mnist.accuracy(model, mnist.perturbed(images, seed), labels, mean, std)
    except ModelFailed as error:  # an allowed graph that does not run: its message names only its own parts
        result["flags"].append(NO_MODEL)
        result["error"] = f"the model could not be evaluated: {error}"
        return result
    except NotAnMLP as error:
        result["flags"].append(NOT_MLP)
        result["error"] = str(error)
        return result
    except Exception as error:  # noqa: BLE001 - anything else: its message might carry grader data
        result["flags"].append(NO_MODEL)
        result["error"] = f"the model could not be evaluated ({type(error).__name__})"
        return result
    result["measured_accuracy"], result["noisy_accuracy"] = measured, noisy
    if measured < settings["threshold"]:
        result["flags"].append(BELOW)
    if measured - noisy > settings["max_noise_drop"]:
        result["flags"].append(LOOKUP)
    reported = result["reported_accuracy"]
    unfinished = OVER_BUDGET in result["flags"]  # a notebook stopped early may not have reported yet
    off = not isinstance(reported, int | float) or abs(float(reported) - measured) > settings["report_tolerance"]
    if off and not unfinished:
        result["flags"].append(MISMATCH)
    return result


def _normalisation(names: dict[str, Any]) -> tuple[float, float]:
    try:
        return float(names["MEAN"]), float(names["STD"])
    except (KeyError, TypeError, ValueError, RuntimeError):  # RuntimeError: a tensor of many values
        raise ModelFailed("MEAN and STD must be numbers") from None


def compare_runs(first: RunExport, decoy: RunExport, again: RunExport | None) -> dict[str, Any]:
    result: dict[str, Any] = {"decoy_weights_sha256": decoy.weights}
    if decoy.weights is not None and decoy.weights == first.weights:
        result["reproducible"], result["test_split_used"] = True, False
        return result
    if again is None:
        result["reproducible"], result["test_split_used"] = False, None
        result["flags"] = [NOT_REPRODUCIBLE]
        return result
    result["rerun_weights_sha256"] = again.weights
    if again.weights is not None and again.weights == first.weights:
        result["reproducible"], result["test_split_used"] = True, True
        result["flags"] = [USES_TEST]
    else:
        result["reproducible"], result["test_split_used"] = False, None
        result["flags"] = [NOT_REPRODUCIBLE]
    return result


def integrity_questions(integrity: dict[str, Any], settings: dict[str, Any]) -> list[dict[str, Any]]:
    """The grader's own checks as questions, so grade sheets and feedback treat them like tests."""
    flags = set(integrity["flags"])
    measured = integrity.get("measured_accuracy")
    threshold = settings["threshold"]
    accuracy_ok = measured is not None and measured >= threshold and not flags & {NOT_MLP, OVER_BUDGET, USES_TEST}
    if measured is None:
        accuracy_message = EXPLAIN[NOT_MLP if NOT_MLP in flags else NO_MODEL] + (
            f": {integrity['error']}" if integrity.get("error") else "")
    else:
        accuracy_message = f"measured {100 * measured:.2f} % on the test set (needs {100 * threshold:g} %)"
        for flag in (OVER_BUDGET, USES_TEST, MISMATCH, LOOKUP):
            if flag in flags:
                accuracy_message += f"; {EXPLAIN[flag]}"
    reproducible = bool(integrity.get("reproducible")) and USES_TEST not in flags
    if integrity.get("reproducible") is None:
        repro_message = "not checked: " + (EXPLAIN[NO_MODEL] if NO_MODEL in flags else "no comparable model")
    elif reproducible:
        repro_message = "a second run under your seed trained bit-identical weights"
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
