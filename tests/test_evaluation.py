"""The grader-side evaluation of a hw4 export, in a child process with limits of its own.

An honest export must give exactly the accuracy the in-process evaluation gives; a hostile one is
stopped by the limit it hits (CPU, memory, the wall-clock backstop), a forged one comes back as
not an MLP, a killed child as crashed, and a garbled answer as crashed too. The caller never
raises for any of them, and its own memory stays where it was. No wall-clock durations are asserted.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn as nn

from autograder.integrity import mnist
from autograder.integrity.evaluation import (
    CPU,
    CRASHED,
    FAILED,
    LIMIT,
    MEMORY,
    NOT_AN_MLP,
    OK,
    WALL,
    Evaluation,
    EvaluationLimits,
    GraderError,
    _outcome,
    evaluate,
)
from autograder.integrity.model_export import GraphModel
from autograder.integrity.synthetic import make_synthetic_mnist
from autograder.sandbox.cgroups import CgroupSet
from tests.exports import MEAN, STD, over_the_wall, trained_export, write_split

pytestmark = pytest.mark.process  # child processes that import torch: not the fast tier

REPO = Path(__file__).resolve().parents[1]
RSS_GROWTH_MB = 150  # what one evaluation may leave in the caller: encoding a ~70 MB export, allocator slack
MODES = [pytest.param(True, id="cgroup", marks=pytest.mark.skipif(not CgroupSet.usable(), reason="no cgroup")),
         pytest.param(False, id="rlimit")]




def assert_clean(message: str | None) -> None:
    """Nothing of the grader's in what the student reads."""
    assert message
    secrets = [v for v in os.environ.values() if len(v) > 8] + [a for a in sys.argv if len(a) > 8] + [str(REPO)]
    assert not [s for s in secrets if s in message], message
    assert "/tmp" not in message and "autograder-evaluation" not in message and len(message) < 600, message


def _rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1)) / 1024  # type: ignore[union-attr]


@contextmanager
def caller_memory_flat() -> Iterator[None]:
    before = _rss_mb()
    yield
    assert _rss_mb() - before < RSS_GROWTH_MB, f"the caller grew from {before:.0f} to {_rss_mb():.0f} MB"



@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("evaluation")
    rng = np.random.default_rng(0)
    train = make_synthetic_mnist(600, rng)
    test_images, test_labels = make_synthetic_mnist(2500, rng)  # 2500: a last batch of 500 as well
    splits = {"test": write_split(folder, "test", test_images, test_labels),
              "perturbed": write_split(folder, "perturbed", mnist.perturbed(test_images, 1), test_labels)}
    big = rng.integers(0, 256, (10_000, 28, 28), dtype=np.uint8), rng.integers(0, 10, 10_000, dtype=np.uint8)
    return {"train": train, "splits": splits, "arrays": {"test": (test_images, test_labels)},
            "big": write_split(folder, "big", *big), "folder": folder}


@pytest.fixture(scope="module")
def honest(data: dict[str, Any]) -> dict[str, Any]:
    """A small MLP trained for a few steps on the synthetic training images, as exported."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Dropout(0.1), nn.Linear(64, 10))
    return trained_export(model, *data["train"], steps=30)


@pytest.fixture(scope="module")
def honest_runs(honest: dict[str, Any], data: dict[str, Any]) -> dict[bool, Evaluation]:
    """The honest export evaluated once per memory mode (their peaks set the memory tests' limits)."""
    modes = [True, False] if CgroupSet.usable() else [False]
    return {cgroup: evaluate(honest, MEAN, STD, data["splits"], EvaluationLimits(cgroup=cgroup)) for cgroup in modes}


@pytest.mark.parametrize("cgroup", MODES)
def test_an_honest_export_gives_exactly_the_in_process_accuracy(
        cgroup: bool, honest: dict[str, Any], honest_runs: dict[bool, Evaluation], data: dict[str, Any]) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the child: the same pinned thread count, the same arithmetic
    try:
        model = GraphModel(honest)
        expected = {name: mnist.accuracy(model, mnist.read_idx(images), mnist.read_idx(labels), MEAN, STD)
                    for name, (images, labels) in data["splits"].items()}
    finally:
        torch.set_num_threads(threads)
    evaluation = honest_runs[cgroup]
    assert (evaluation.kind, evaluation.error, evaluation.limit) == (OK, None, None)
    assert evaluation.accuracies == expected
    assert expected["test"] > 0.5  # a model that learned something, not a constant guess
    assert evaluation.peak_memory_mb and evaluation.cpu_seconds


def test_an_export_that_takes_too_much_cpu_is_stopped(data: dict[str, Any]) -> None:
    # A legal MLP (5.8 M parameters, ~12 MFLOP per image): ~230 GFLOP over two splits of 10,000 images,
    # minutes on one core, against a limit of 1 s.
    torch.manual_seed(0)
    export = over_the_wall(nn.Sequential(nn.Linear(784, 2048), nn.ReLU(), nn.Linear(2048, 2048), nn.ReLU(),
                                         nn.Linear(2048, 10)))
    with caller_memory_flat():
        evaluation = evaluate(export, MEAN, STD, {"a": data["big"], "b": data["big"]},
                              EvaluationLimits(cpu_seconds=1))
    assert (evaluation.kind, evaluation.limit) == (LIMIT, CPU)
    assert "CPU time" in evaluation.error
    assert_clean(evaluation.error)


class _Hungry(nn.Module):
    """Legal and within GraphModel's caps (12.7 M parameters, 4 x 64 KB of intermediates per image,
    just under its 256 KB), so a batch of 2000 images holds 512 MB at once."""

    def __init__(self) -> None:
        super().__init__()
        self.wide, self.out = nn.Linear(784, 16_000), nn.Linear(16_000, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.wide(x))
        return self.out(h * 1.0 + 0.0)


@pytest.mark.parametrize("cgroup", MODES)
def test_an_export_that_needs_too_much_memory_is_stopped(
        cgroup: bool, honest_runs: dict[bool, Evaluation], data: dict[str, Any]) -> None:
    limit_mb = int(honest_runs[cgroup].peak_memory_mb + 200)  # the hungry one needs ~700 MB more
    export = over_the_wall(_Hungry())
    with caller_memory_flat():
        evaluation = evaluate(export, MEAN, STD, data["splits"], EvaluationLimits(memory_mb=limit_mb, cgroup=cgroup))
    del export
    assert (evaluation.kind, evaluation.limit) == (LIMIT, MEMORY), evaluation
    assert f"{limit_mb} MB" in evaluation.error
    assert_clean(evaluation.error)


def test_a_forged_graph_is_not_an_mlp(honest: dict[str, Any], data: dict[str, Any]) -> None:
    forged = {"graph": [dict(node) for node in honest["graph"]], "state": dict(honest["state"])}
    forged["graph"][1] |= {"op": "call_function", "target": "posix.system",
                           "args": [{"const": f"touch {data['folder']}/canary"}]}
    with caller_memory_flat():
        evaluation = evaluate(forged, MEAN, STD, data["splits"])
    assert evaluation.kind == NOT_AN_MLP and evaluation.limit is None and not evaluation.accuracies
    assert "posix.system" in evaluation.error
    assert_clean(evaluation.error)
    assert not (data["folder"] / "canary").exists()


class _Flat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(784, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x).flatten()  # one long row instead of one row of scores per image


def test_an_allowed_graph_that_fails_on_the_images_is_failed(data: dict[str, Any]) -> None:
    evaluation = evaluate(over_the_wall(_Flat()), MEAN, STD, data["splits"])
    assert evaluation.kind == FAILED and evaluation.limit is None
    assert "not to one row of scores per image" in evaluation.error
    assert_clean(evaluation.error)


def test_an_export_that_is_not_plain_data_never_reaches_a_child(data: dict[str, Any]) -> None:
    started: list[int] = []
    evaluation = evaluate({"graph": [], "state": {"w": object()}}, MEAN, STD, data["splits"],
                          on_start=started.append)
    assert evaluation.kind == NOT_AN_MLP and not started


def test_a_child_killed_by_sigkill_is_crashed(honest: dict[str, Any], data: dict[str, Any]) -> None:
    with caller_memory_flat():
        evaluation = evaluate(honest, MEAN, STD, data["splits"], on_start=lambda pid: os.kill(pid, signal.SIGKILL))
    assert (evaluation.kind, evaluation.limit, evaluation.accuracies) == (LIMIT, CRASHED, {})
    assert_clean(evaluation.error)


def test_a_stopped_child_is_ended_by_the_backstop(honest: dict[str, Any], data: dict[str, Any]) -> None:
    evaluation = evaluate(honest, MEAN, STD, data["splits"], EvaluationLimits(wall_seconds=1),
                          on_start=lambda pid: os.kill(pid, signal.SIGSTOP))
    assert (evaluation.kind, evaluation.limit) == (LIMIT, WALL)
    assert_clean(evaluation.error)


def test_a_caller_that_ignores_sigchld_still_gets_the_answer(honest: dict[str, Any], data: dict[str, Any],
                                                             honest_runs: dict[bool, Evaluation]) -> None:
    previous = signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children reaped by the kernel: no status
    try:
        evaluation = evaluate(honest, MEAN, STD, data["splits"])
    finally:
        signal.signal(signal.SIGCHLD, previous)
    assert evaluation.kind == OK and evaluation.accuracies == next(iter(honest_runs.values())).accuracies


def test_the_graders_own_missing_or_broken_data_raises_before_a_child_starts(
        honest: dict[str, Any], data: dict[str, Any]) -> None:
    images, labels = data["splits"]["test"]
    broken, short = data["folder"] / "broken-labels", data["folder"] / "short-labels"
    broken.write_bytes(b"not an IDX file")
    mnist.write_idx(short, np.zeros(3, np.uint8))
    cases = {"missing": (images, data["folder"] / "missing"), "not an unsigned-byte IDX": (images, broken),
             "images but 3 labels": (images, short), "size does not match": (labels.with_name("x"), labels)}
    labels.with_name("x").write_bytes(images.read_bytes()[:-1])
    for message, split in cases.items():
        started: list[int] = []
        with pytest.raises(GraderError, match=message):
            evaluate(honest, MEAN, STD, {"test": split}, on_start=started.append)
        assert not started
    with pytest.raises(GraderError):
        evaluate(honest, MEAN, STD, {})


NAMES = ["test", "perturbed"]
GOOD = {"kind": OK, "accuracies": {"test": 0.5, "perturbed": 0.25}, "error": None, "limit": None, "peak_mb": 1.0}
GARBAGE = {
    "not json": "{", "null": "null", "a list": "[]", "too deep": "[" * 100_000,
    "missing keys": json.dumps({"kind": OK}), "extra key": json.dumps({**GOOD, "x": 1}),
    "unknown kind": json.dumps({**GOOD, "kind": "passed"}),
    "unknown split": json.dumps({**GOOD, "accuracies": {"test": 0.5, "perturbed": 0.5, "other": 1.0}}),
    "a split missing": json.dumps({**GOOD, "accuracies": {"test": 0.5}}),
    "accuracy above 1": json.dumps({**GOOD, "accuracies": {"test": 1.5, "perturbed": 0.5}}),
    "accuracy NaN": json.dumps({**GOOD, "accuracies": {"test": float("nan"), "perturbed": 0.5}}),
    "accuracy as text": json.dumps({**GOOD, "accuracies": {"test": "0.99", "perturbed": 0.5}}),
    "accuracy as int": json.dumps({**GOOD, "accuracies": {"test": 1, "perturbed": 0.5}}),
    "ok with an error": json.dumps({**GOOD, "error": "boom"}),
    "failed without an error": json.dumps({**GOOD, "kind": FAILED}),
    "unknown limit": json.dumps({**GOOD, "kind": LIMIT, "error": "x", "limit": "cpu"}),
    "error not text": json.dumps({**GOOD, "kind": FAILED, "error": ["x"]}),
    "peak not a number": json.dumps({**GOOD, "peak_mb": "1"}),
}


@pytest.mark.parametrize("text", GARBAGE.values(), ids=GARBAGE.keys())
def test_a_garbled_answer_is_a_crash(text: str) -> None:
    evaluation = _outcome(0, 1.0, False, False, text, NAMES, EvaluationLimits())
    assert (evaluation.kind, evaluation.limit, evaluation.accuracies) == (LIMIT, CRASHED, {})


def test_how_an_end_is_read() -> None:
    limits = EvaluationLimits(cpu_seconds=10)
    good = json.dumps(GOOD)

    def end(exitcode: int, cpu: float = 1.0, stopped: bool = False, oom: bool = False,
            text: str | None = good) -> tuple[str, str | None]:
        evaluation = _outcome(exitcode, cpu, stopped, oom, text, NAMES, limits)
        return evaluation.kind, evaluation.limit

    assert end(0) == (OK, None)
    assert end(0, text=None) == (LIMIT, CRASHED)
    assert end(-signal.SIGXCPU) == (LIMIT, CPU)
    assert end(-signal.SIGKILL, cpu=12.0) == (LIMIT, CPU)  # RLIMIT_CPU's hard limit
    assert end(-signal.SIGKILL, oom=True) == (LIMIT, MEMORY)
    assert end(-signal.SIGKILL) == (LIMIT, CRASHED)
    assert end(-signal.SIGKILL, stopped=True) == (LIMIT, WALL)
    assert end(-signal.SIGSEGV) == (LIMIT, CRASHED)
    assert end(1) == (LIMIT, CRASHED)
    memory = json.dumps({**GOOD, "kind": LIMIT, "accuracies": {}, "error": "x", "limit": MEMORY})
    assert end(0, text=memory) == (LIMIT, MEMORY)
    assert _outcome(0, 1.0, False, False, memory, NAMES, limits).error.startswith("evaluating the model needed")
    with pytest.raises(GraderError):
        end(0, text=json.dumps({**GOOD, "kind": "grader", "accuracies": {}, "error": "x"}))
