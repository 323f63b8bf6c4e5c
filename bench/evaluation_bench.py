"""The grader's evaluation of a hw4 export, fork server against a fresh interpreter, in one run.

N evaluations of the same small exported MLP on a small synthetic test split (write_synthetic_mnist),
on the fork server (evaluation_server.py; its start is paid by the first) and in a fresh interpreter
each (EvaluationLimits(server=False)), alternately, so that a drift of the machine's speed touches
both. Printed: wall and CPU seconds of each path, the server's own CPU (its start, paid once per
grading process), and the ratios fresh / server.

    uv run python bench/evaluation_bench.py [-n 5] [--images 600]

The evaluation's CPU is the child's own (os.wait4); with a fresh interpreter it includes its start.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from autograder.execution import codec
from autograder.integrity import evaluation_server, mnist
from autograder.integrity.evaluation import Evaluation, EvaluationLimits, evaluate
from autograder.integrity.model_export import EXPORTER_SOURCE
from autograder.integrity.synthetic import write_synthetic_mnist

MEAN, STD = 0.1307, 0.3081


def small_export() -> Any:
    """A reference-like MLP (784-128-10), traced and sent through the codec as the kernel sends it."""
    exporter: dict[str, Any] = {}
    exec(EXPORTER_SOURCE, exporter)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    return codec.decode(json.loads(json.dumps(codec.encode(exporter["__autograder_trace"](model)))))


def server_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime, its own


def timed(export: Any, splits: dict[str, tuple[Path, Path]], limits: EvaluationLimits) -> tuple[float, Evaluation]:
    started = time.monotonic()
    result = evaluate(export, MEAN, STD, splits, limits)
    assert result.ok, result
    return time.monotonic() - started, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=5, help="evaluations on each path")
    parser.add_argument("--images", type=int, default=600, help="images in the synthetic test split")
    args = parser.parse_args()
    if not evaluation_server.wanted(EvaluationLimits()):
        raise SystemExit(f"no fork server here (Linux only; {evaluation_server.SWITCH} unset)")
    export = small_export()
    with tempfile.TemporaryDirectory(prefix="evaluation-bench-") as name:
        raw = Path(name)
        write_synthetic_mnist(raw, n_train=10, n_test=args.images)
        splits = {"test": (raw / mnist.TEST_IMAGES, raw / mnist.TEST_LABELS)}
        runs: dict[str, list[tuple[float, Evaluation]]] = {"server": [], "fresh": []}
        for _ in range(args.n):
            runs["fresh"].append(timed(export, splits, EvaluationLimits(server=False)))
            runs["server"].append(timed(export, splits, EvaluationLimits()))
        server = evaluation_server.current()
        assert server is not None
        own = server_cpu_seconds(server.pid)
    assert runs["server"][0][1].accuracies == runs["fresh"][0][1].accuracies
    walls = {path: [wall for wall, _ in values] for path, values in runs.items()}
    cpus = {path: [result.cpu_seconds or 0.0 for _, result in values] for path, values in runs.items()}

    print(f"{args.n} evaluations of a 784-128-10 MLP on {args.images} synthetic images, alternately")
    for path in ("fresh", "server"):
        print(f"  {path:6}  wall: total {sum(walls[path]):6.2f} s, each " + " ".join(f"{w:.2f}" for w in walls[path])
              + f"  | child CPU: total {sum(cpus[path]):6.2f} s, median {statistics.median(cpus[path]):.3f} s")
    print(f"  the server's own CPU (its start, once per grading process): {own:.2f} s")
    later = walls["server"][1:] or walls["server"]
    print(f"  fresh / server, wall, all {args.n} (the server's start included): "
          f"{sum(walls['fresh']) / sum(walls['server']):.1f}x")
    print(f"  fresh / server, wall, median of one evaluation once the server runs: "
          f"{statistics.median(walls['fresh']) / statistics.median(later):.1f}x")
    print(f"  fresh / server, CPU, all {args.n} (the server's own included): "
          f"{sum(cpus['fresh']) / (sum(cpus['server']) + own):.1f}x")


if __name__ == "__main__":
    main()
