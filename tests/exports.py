"""Trained models as the grader receives them, for the evaluation's tests (no kernel involved)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from autograder.execution import codec
from autograder.integrity import mnist
from autograder.integrity.model_export import EXPORTER_SOURCE

MEAN, STD = 0.1307, 0.3081

_EXPORTER: dict[str, Any] = {}
exec(EXPORTER_SOURCE, _EXPORTER)  # the kernel-side tracer, without IPython


def over_the_wall(model: nn.Module) -> Any:
    """The model as the grader receives it: traced, encoded, sent as JSON, decoded."""
    return codec.decode(json.loads(json.dumps(codec.encode(_EXPORTER["__autograder_trace"](model)))))


def write_split(folder: Path, name: str, images: np.ndarray, labels: np.ndarray) -> tuple[Path, Path]:
    mnist.write_idx(folder / f"{name}-images", images)
    mnist.write_idx(folder / f"{name}-labels", labels)
    return folder / f"{name}-images", folder / f"{name}-labels"


def trained_export(model: nn.Module, images: np.ndarray, labels: np.ndarray, steps: int) -> Any:
    """`model` trained with Adam for `steps` full-batch steps from seed 0, then exported."""
    x, y = torch.from_numpy(mnist.normalised(images, MEAN, STD)), torch.from_numpy(labels.astype(np.int64))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimiser.step()
    return over_the_wall(model)
