"""Rules on an export's weights: a convolution written as a dense layer is caught, exactly or under
tiny noise, with stride and padding; honest MLPs (fresh, trained, L1-regularised, with dropout,
pruned, initialised alike) never are; and every NaN or infinite value is named.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import prune

from autograder.execution import codec
from autograder.integrity import mnist
from autograder.integrity.model_export import EXPORTER_SOURCE
from autograder.integrity.structure import MAX_LISTED, convolution_like, non_finite
from autograder.integrity.synthetic import make_synthetic_mnist

pytestmark = pytest.mark.process  # child processes that import torch: not the fast tier

MEAN, STD = 0.1307, 0.3081

_EXPORTER: dict[str, Any] = {}
exec(EXPORTER_SOURCE, _EXPORTER)  # the kernel-side tracer, without IPython


def export_of(model: nn.Module) -> dict[str, Any]:
    """The model as the grader receives it: traced, encoded, sent as JSON, decoded."""
    return codec.decode(json.loads(json.dumps(codec.encode(_EXPORTER["__autograder_trace"](model)))))


def verdict(model: nn.Module) -> str | None:
    export = export_of(model)
    return convolution_like(export["state"], export["graph"])


def dense_equivalent(conv: nn.Conv2d) -> np.ndarray:
    """The conv as the (outputs x inputs) matrix a Linear layer holds: the conv applied to each of
    the unit basis images, its bias left out."""
    side = 28
    inputs = conv.in_channels * side * side
    basis = torch.eye(inputs).reshape(inputs, conv.in_channels, side, side)
    with torch.no_grad():
        columns = F.conv2d(basis, conv.weight, None, conv.stride, conv.padding, conv.dilation)
    return columns.reshape(inputs, -1).T.contiguous().numpy()


def as_mlp(matrix: np.ndarray, noise: float = 0.0) -> nn.Module:
    """A Linear layer holding `matrix` (plus noise of that absolute size) followed by a classifier."""
    out_features, in_features = matrix.shape
    layer = nn.Linear(in_features, out_features)
    with torch.no_grad():
        weight = torch.from_numpy(matrix.copy())
        if noise:
            weight += noise * torch.randn(weight.shape, generator=torch.Generator().manual_seed(1))
        layer.weight.copy_(weight)
    return nn.Sequential(nn.Flatten(), layer, nn.ReLU(), nn.Linear(out_features, 10))


CONVOLUTIONS = {
    "3x3": dict(in_channels=1, out_channels=8, kernel_size=3),
    "5x5 stride 2": dict(in_channels=1, out_channels=4, kernel_size=5, stride=2),
    "3x3 stride 2 padding 1": dict(in_channels=1, out_channels=4, kernel_size=3, stride=2, padding=1),
    "3x3 padding 1": dict(in_channels=1, out_channels=4, kernel_size=3, padding=1),
    "7x7 padding 3": dict(in_channels=1, out_channels=2, kernel_size=7, padding=3),
    "2 channels 3x3": dict(in_channels=2, out_channels=4, kernel_size=3),  # in_features 2 x 784
    "3x3 dilation 2": dict(in_channels=1, out_channels=4, kernel_size=3, dilation=2),
}


@pytest.mark.parametrize("settings", CONVOLUTIONS.values(), ids=CONVOLUTIONS.keys())
def test_an_exact_dense_convolution_is_caught_by_its_shared_kernel(settings: dict[str, Any]) -> None:
    torch.manual_seed(0)
    message = verdict(as_mlp(dense_equivalent(nn.Conv2d(**settings, bias=False))))
    assert message and "repeat exactly the nonzero weights" in message, message
    assert message.startswith("layer 1 (")  # the Linear's own name in the student's Sequential


@pytest.mark.parametrize("noise", [1e-7, 1e-4, 1e-3])
@pytest.mark.parametrize("settings", CONVOLUTIONS.values(), ids=CONVOLUTIONS.keys())
def test_a_dense_convolution_under_noise_is_caught_by_its_window(settings: dict[str, Any], noise: float) -> None:
    # 1e-7 defeats any exact comparison; 1e-3 is ~0.6 % of a kernel value (torch's init: 0.17 on
    # average), the most noise CONCENTRATION is set to tolerate.
    torch.manual_seed(0)
    conv = nn.Conv2d(**settings, bias=False)
    message = verdict(as_mlp(dense_equivalent(conv), noise))
    side = settings["kernel_size"] + (settings["kernel_size"] - 1) * (settings.get("dilation", 1) - 1)
    assert message and "window" in message and "repeat" not in message, message
    assert f"inside a {side}x{side} window" in message or noise > 1e-7, message


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = make_synthetic_mnist(1000, np.random.default_rng(0))
    return torch.from_numpy(mnist.normalised(images, MEAN, STD)), torch.from_numpy(labels.astype(np.int64))


def trained(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor], steps: int = 150, l1: float = 0.0,
            optimiser: str = "adam") -> nn.Module:
    x, y = data
    make = {"adam": lambda p: torch.optim.Adam(p, lr=3e-3), "sgd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)}
    step = make[optimiser](model.parameters())
    model.train()
    for i in range(steps):
        batch = slice((i * 100) % len(x), (i * 100) % len(x) + 100)
        loss = F.cross_entropy(model(x[batch]), y[batch])
        if l1:
            loss = loss + l1 * sum(p.abs().sum() for name, p in model.named_parameters() if name.endswith("weight"))
        step.zero_grad()
        loss.backward()
        step.step()
    return model.eval()


def mlp(*, dropout: float = 0.0) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Dropout(dropout), nn.Linear(128, 64),
                         nn.ReLU(), nn.Linear(64, 10))


def test_a_fresh_linear_layer_is_not_flagged() -> None:
    torch.manual_seed(0)
    assert verdict(nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))) is None
    assert verdict(mlp()) is None


@pytest.mark.parametrize("optimiser", ["adam", "sgd"])
def test_a_briefly_trained_mlp_is_not_flagged(optimiser: str, data: tuple[torch.Tensor, torch.Tensor]) -> None:
    torch.manual_seed(0)
    assert verdict(trained(mlp(), data, optimiser=optimiser)) is None


def test_an_l1_regularised_mlp_is_not_flagged(data: tuple[torch.Tensor, torch.Tensor]) -> None:
    torch.manual_seed(0)
    model = trained(mlp(), data, steps=300, l1=1e-3)
    weight = model[1].weight.detach().numpy()
    assert (np.abs(weight) < 1e-3 * np.abs(weight).max()).mean() > 0.05  # many near zero, as L1 makes them
    assert verdict(model) is None


def test_an_mlp_with_dropout_is_not_flagged(data: tuple[torch.Tensor, torch.Tensor]) -> None:
    torch.manual_seed(0)
    assert verdict(trained(mlp(dropout=0.5), data)) is None


def test_a_pruned_mlp_with_exact_zeros_is_not_flagged(data: tuple[torch.Tensor, torch.Tensor]) -> None:
    torch.manual_seed(0)
    model = trained(mlp(), data)
    for layer in (model[1], model[4], model[6]):
        prune.l1_unstructured(layer, "weight", amount=0.9)  # 90 % exact zeros, the largest weights kept
        prune.remove(layer, "weight")
    assert (model[1].weight == 0).float().mean() > 0.85
    assert verdict(model) is None


def test_an_mlp_whose_units_started_alike_is_not_flagged(data: tuple[torch.Tensor, torch.Tensor]) -> None:
    torch.manual_seed(0)
    model = mlp()
    for layer in (model[1], model[4], model[6]):  # a symmetry training never breaks: identical dense rows
        nn.init.constant_(layer.weight, 0.01)
        nn.init.zeros_(layer.bias)
    model = trained(model, data, steps=30)
    assert len(np.unique(model[1].weight.detach().numpy(), axis=0)) == 1
    assert verdict(model) is None


def test_forged_or_odd_inputs_never_raise() -> None:
    assert convolution_like({}, None) is None
    assert convolution_like({"a.weight": [[0.0] * 784] * 8}, [{"op": "call_module", "target": "a"}]) is None
    assert convolution_like("state", "graph") is None  # type: ignore[arg-type]
    nan = np.full((16, 784), np.nan, dtype=np.float32)
    assert convolution_like({"l.weight": nan}, []) is None
    assert convolution_like({"l.weight": np.zeros((16, 784), np.float32)}, []) is None


# --- non-finite values -----------------------------------------------------------------------------

NAMES = {"SEED": 2024, "MEAN": MEAN, "STD": STD, "reported_accuracy": 0.97}


def test_finite_weights_and_names_pass() -> None:
    state = {"fc.weight": np.ones((4, 4), np.float32), "bn.num_batches_tracked": np.int64(3)}
    assert non_finite(state, NAMES) is None
    assert non_finite(state, {**NAMES, "reported_accuracy": "97.5 %"}) is None  # a string: mismatch's business
    assert non_finite(state, {**NAMES, "reported_accuracy": None, "SEED": 10**400}) is None
    assert non_finite("state", None) is None  # type: ignore[arg-type]


def test_non_finite_weights_are_named_with_their_counts() -> None:
    weight = np.ones((4, 4), np.float32)
    weight[0, :3] = np.nan
    bias = np.array([1.0, np.inf, -np.inf], np.float64)
    message = non_finite({"fc.weight": weight, "fc.bias": bias, "ok.weight": np.ones(2)}, NAMES)
    assert message and "fc.weight (3 NaN of 16 values)" in message and "fc.bias (2 infinite of 3 values)" in message
    assert "ok.weight" not in message


NON_FINITE = {
    "float NaN": ("reported_accuracy", float("nan"), "NaN"),
    "numpy NaN": ("reported_accuracy", np.float32("nan"), "NaN"),
    "0-d array": ("reported_accuracy", np.array(np.nan), "NaN"),
    "text nan": ("reported_accuracy", "nan", "NaN"),
    "in a list": ("reported_accuracy", [0.97, float("nan")], "NaN"),
    "in a dict": ("reported_accuracy", {"test": float("inf")}, "infinite"),
    "array": ("reported_accuracy", np.array([0.9, np.nan, np.inf]), "1 NaN, 1 infinite of 3 values"),
    "MEAN NaN": ("MEAN", float("nan"), "NaN"),
    "MEAN text": ("MEAN", " -Infinity ", "infinite"),
    "STD inf": ("STD", float("inf"), "infinite"),
    "STD tensor-like": ("STD", np.array([np.inf]), "infinite"),
}


@pytest.mark.parametrize(("name", "value", "what"), NON_FINITE.values(), ids=NON_FINITE.keys())
def test_a_non_finite_notebook_value_is_named(name: str, value: Any, what: str) -> None:
    message = non_finite({"fc.weight": np.ones((2, 2), np.float32)}, {**NAMES, name: value})
    assert message == f"not a finite number (NaN or infinite): {name} ({what})"


def test_many_non_finite_entries_are_counted_not_all_listed() -> None:
    state = {f"layer{i}.weight": np.array([np.nan], np.float32) for i in range(MAX_LISTED + 3)}
    message = non_finite(state, {"MEAN": float("nan")})
    assert message and message.endswith("; and 4 more") and "layer0.weight (NaN)" in message
