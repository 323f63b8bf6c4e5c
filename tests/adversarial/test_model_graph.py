"""The grader-side model interpreter on forged exports, and on honest models.

A hw4 export (graph + state) is written by the student's kernel, so it can be anything. Every forged
export here must be refused with NotAnMLP, for the intended reason, fast, without allocating, and
with a message that carries nothing of the grader's (environment, command line, paths, object reprs).
Honest MLPs, traced with the real exporter, must give exactly the torch model's outputs.
"""

from __future__ import annotations

import copy
import json
import os
import re
import sys
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from autograder.execution import codec
from autograder.integrity import mnist
from autograder.integrity.model_export import (
    EXPORTER_SOURCE,
    MAX_ARG_DEPTH,
    MAX_NODES,
    MAX_PARAMETERS,
    GraphModel,
    ModelFailed,
    NotAnMLP,
)
from autograder.integrity.training import NO_MODEL, NOT_MLP, RunExport, measure

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "reference" / "hw4_mnist" / "submissions"
MEMORY_CAP = 50 * 2**20  # what refusing a forged export may cost: far below any allocation it asks for
BATCH = 2000  # the grader's evaluation batch (mnist.accuracy)

_EXPORTER: dict[str, Any] = {}
exec(EXPORTER_SOURCE, _EXPORTER)  # the kernel-side source, without IPython: only its pure tracing part is used


def trace(model: nn.Module) -> dict[str, Any]:
    return _EXPORTER["__autograder_trace"](model)


def over_the_wall(export: dict[str, Any]) -> Any:
    """The export as the grader receives it: encoded in the kernel, sent as JSON, decoded here."""
    return codec.decode(json.loads(json.dumps(codec.encode(export))))


def assert_clean(message: str) -> None:
    """Nothing of the grader's in a message a student reads."""
    secrets = [v for v in os.environ.values() if len(v) > 8] + [a for a in sys.argv if len(a) > 8] + [str(REPO)]
    leaked = [secret for secret in secrets if secret in message]
    assert not leaked, f"the message carries grader data: {message[:300]}"
    assert " at 0x" not in message and len(message) < 600, message[:300]


def _resident_kb(field: str) -> int:
    status = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", status, re.M).group(1))  # type: ignore[union-attr]


@contextmanager
def bounded_memory() -> Iterator[None]:
    """The block's peak memory: Python and numpy by tracemalloc, torch too by the process's peak RSS
    (reset through /proc/self/clear_refs where the kernel allows it)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        before = _resident_kb("VmRSS")
    except OSError:
        before = None
    tracemalloc.start()
    try:
        yield
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < MEMORY_CAP, f"{peak / 2**20:.0f} MB traced"
        if before is not None:
            assert (_resident_kb("VmHWM") - before) * 1024 < MEMORY_CAP, "the peak RSS grew too much"


# --- forged exports ---------------------------------------------------------------------------------

BASE = trace(nn.Sequential(nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10)))
INPUT = BASE["graph"][0]["name"]
GraphModel(BASE)(torch.zeros(2, 784))  # torch imports its meta-device support on first use: not a case's cost
FIRST, LAST = BASE["graph"][1], BASE["graph"][3]  # the two Linear layers


def ref(name: str) -> dict[str, Any]:
    return {"node": name}


def const(value: Any) -> dict[str, Any]:
    return {"const": value}


X = ref(INPUT)


def node(name: str, op: str, target: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"name": name, "op": op, "target": target, "args": list(args), "kwargs": kwargs}


def fn(name: str, target: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    return node(name, "call_function", target, *args, **kwargs)


def method(name: str, target: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    return node(name, "call_method", target, *args, **kwargs)


def base() -> dict[str, Any]:
    return copy.deepcopy(BASE)


def returning(*nodes: dict[str, Any]) -> dict[str, Any]:
    """The base export with `nodes` added before its output, which then returns the last of them."""
    export = base()
    export["graph"][-1:-1] = nodes
    export["graph"][-1]["args"] = [ref(nodes[-1]["name"])]
    return export


def edit(change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    export = base()
    change(export)
    return export


def layer(name: str, kind: str, config: dict[str, Any], arg: dict[str, Any] = X) -> dict[str, Any]:
    return {**node(name, "call_module", name, arg), "module": kind, "config": config}


LINEAR = "torch.nn.modules.linear.Linear"


def fc_weights(n_in: Any, n_out: Any) -> dict[str, np.ndarray]:
    """Weights of layer `fc`: of the declared shape when small, else tiny stand-ins (a forged huge
    layer must be refused for its declaration, and the test must not allocate what it declares)."""
    small = all(type(v) is int for v in (n_in, n_out)) and n_in * n_out <= 10**6
    n_out, n_in = (n_out, n_in) if small else (1, 1)
    return {"fc.weight": np.zeros((n_out, n_in), np.float32), "fc.bias": np.zeros(n_out, np.float32)}


def linear_only(n_in: Any, n_out: Any, uses: int = 1) -> dict[str, Any]:
    """A graph of one Linear(n_in, n_out), layer `fc`, applied `uses` times."""
    graph = [BASE["graph"][0]]
    for i in range(uses):
        graph.append({**layer("fc" if i == 0 else f"fc_{i}", LINEAR, {"in_features": n_in, "out_features": n_out},
                              ref(graph[-1]["name"])), "target": "fc"})
    graph.append(node("output", "output", "output", ref(graph[-1]["name"])))
    return {"graph": graph, "state": fc_weights(n_in, n_out)}


def unchained() -> dict[str, Any]:
    """Linear(784, 16) followed by a Linear(10, 10): each layer's weights fit, the shapes do not chain."""
    export = returning(layer("fc", LINEAR, {"in_features": 10, "out_features": 10}, ref(FIRST["name"])))
    export["state"].update(fc_weights(10, 10))
    return export


def deep_seq(levels: int) -> dict[str, Any]:
    spec: dict[str, Any] = const(-1)
    for _ in range(levels):  # built by a loop, as a decoder would hand it over: nested dicts, no JSON
        spec = {"seq": [spec]}
    return returning(method("v", "view", X, spec))


def chain(n: int) -> dict[str, Any]:
    return returning(*(fn(f"r{i}", "torch.nn.functional.relu", ref(f"r{i - 1}" if i else INPUT)) for i in range(n)))


def squarings(n: int) -> dict[str, Any]:
    """size * size, squared again and again: Python ints would grow without bound."""
    nodes = [method("s0", "size", X, const(0))]
    nodes += [fn(f"s{i}", "_operator.mul", ref(f"s{i - 1}"), ref(f"s{i - 1}")) for i in range(1, n)]
    return returning(*nodes, method("v", "view", X, ref(nodes[-1]["name"])))


def state_with(key: str, value: Any) -> dict[str, Any]:
    return edit(lambda e: e["state"].__setitem__(key, value))


def nested_dict(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels):
        value = {"a": value}
    return value


@dataclass(frozen=True)
class Forged:
    name: str
    export: Callable[[], Any]
    reason: str  # a fragment of the message: refused for the intended reason
    on_call: bool = False  # refused only when evaluated (the types of values are known then)


W1 = f"{FIRST['target']}.weight"
FORGED = [
    *(Forged(f"getattr_{a}", lambda a=a: returning(fn("g", "builtins.getattr", X, const(a))), "getattr of")
      for a in ("__class__", "__globals__", "__dict__", "__init__", "__module__", "T")),
    Forged("getattr_of_a_string", lambda: returning(fn("g", "builtins.getattr", const("text"), const("shape"))),
           "not of a tensor", on_call=True),
    Forged("getattr_by_a_node", lambda: returning(method("s", "size", X, const(0)), fn("g", "builtins.getattr", X,
                                                                                        ref("s"))), "getattr of"),
    *(Forged(f"dtype_{d}", lambda d=d: returning(method("v", "view", X, {"dtype": d})), "dtype")
      for d in ("torch.os", "torch.load", "torch.float32.__class__", "builtins.eval")),
    Forged("format_on_a_string", lambda: returning(method("f", "format", const("{0.__globals__}"), X)),
           "not an MLP's: .'format'()"),
    Forged("allowed_method_on_a_string", lambda: returning(method("f", "size", const("{0.__globals__}"))),
           "called on something other than a tensor", on_call=True),
    Forged("method_on_a_tuple", lambda: returning(method("v", "view", {"seq": [X, X]}, const(-1))),
           "called on something other than a tensor", on_call=True),
    Forged("method_on_the_state", lambda: returning(method("v", "view", ref(W1), const(-1))), "not an earlier node"),
    Forged("method_on_a_dtype", lambda: returning(method("v", "view", {"dtype": "torch.float32"})),
           "called on something other than a tensor", on_call=True),
    Forged("method_with_a_tensor_setting", lambda: returning(method("v", "view", X, X)),
           "with something other than settings", on_call=True),
    Forged("get_attr_of_a_weight", lambda: returning(node("w", "get_attr", W1)), "parameter access"),
    Forged("getitem_of_a_string", lambda: returning(fn("i", "_operator.getitem", const("secret"), const(0))),
           "getitem of", on_call=True),
    Forged("getitem_by_a_string", lambda: returning(fn("i", "_operator.getitem", X, const("a"))), "getitem of",
           on_call=True),
    Forged("getitem_by_a_tensor", lambda: returning(fn("i", "_operator.getitem", X, X)), "getitem of", on_call=True),
    Forged("getitem_giving_a_string", lambda: returning(fn("i", "_operator.getitem", {"seq": [const("s")]},
                                                           const(0))), "not a tensor, shape or number",
           on_call=True),
    Forged("forward_reference", lambda: edit(lambda e: e["graph"][1].__setitem__("args", [ref(LAST["name"])])),
           "not an earlier node"),
    Forged("unknown_reference", lambda: returning(method("v", "view", ref("os"), const(-1))), "not an earlier node"),
    Forged("self_reference", lambda: returning(method("v", "view", ref("v"), const(-1))), "not an earlier node"),
    Forged("duplicate_names", lambda: returning(method("v", "view", X, const(-1)), method("v", "view", X, const(-1))),
           "two nodes are named"),
    Forged("two_placeholders", lambda: edit(lambda e: e["graph"].insert(1, {**e["graph"][0], "name": "y"})),
           "one input"),
    Forged("no_output", lambda: edit(lambda e: e["graph"].pop()), "one output"),
    Forged("two_outputs", lambda: edit(lambda e: e["graph"].insert(2, {**e["graph"][-1], "name": "o2",
                                                                      "args": [ref(FIRST["name"])]})), "one output"),
    Forged("unknown_op", lambda: returning(node("p", "call_python", "print", X)), "unknown kind"),
    Forged("unknown_argument_kind", lambda: returning(method("v", "view", X, {"code": "import os"})), "unknown kind"),
    Forged("argument_of_two_kinds", lambda: returning(method("v", "view", X, {"const": 1, "node": INPUT})),
           "not a node, constant"),
    Forged("ellipsis_with_a_payload", lambda: returning(method("v", "view", X, {"ellipsis": "os"})), "unknown kind"),
    Forged("huge_linear_config", lambda: linear_only(10**6, 10**6), "in_features must be an int from 1"),
    Forged("linear_over_the_parameter_cap", lambda: linear_only(40_000, 40_000), "parameters per image"),
    Forged("shared_linear_over_the_parameter_cap",
           lambda: linear_only(4096, 4096, uses=MAX_PARAMETERS // (4096 * 4096) + 1), "parameters per image"),
    Forged("huge_batchnorm", lambda: returning(layer("bn", "torch.nn.modules.batchnorm.BatchNorm1d",
                                                     {"num_features": 10**9})), "num_features must be"),
    Forged("huge_layernorm", lambda: returning(layer("ln", "torch.nn.modules.normalization.LayerNorm",
                                                     {"normalized_shape": [4096, 4096, 4096]})), "normalized_shape"),
    Forged("linear_size_as_a_string", lambda: linear_only(784, "10"), "out_features must be"),
    Forged("linear_size_as_a_bool", lambda: linear_only(784, True), "out_features must be"),
    Forged("deeply_nested_settings", lambda: edit(lambda e: e["graph"][1]["config"].__setitem__(
        "in_features", nested_dict(10**5))), "settings are not a short mapping"),
    Forged("layer_declared_twice_differently", lambda: returning(
        {**layer("again", LINEAR, {"in_features": 784, "out_features": 17}), "target": FIRST["target"]}),
        "declared twice"),
    Forged("too_many_nodes", lambda: chain(10**5), f"more than the {MAX_NODES} allowed"),
    Forged("just_too_many_nodes", lambda: chain(MAX_NODES), f"more than the {MAX_NODES} allowed"),
    Forged("deeply_nested_seq", lambda: deep_seq(10**5), f"more than {MAX_ARG_DEPTH} levels"),
    Forged("just_too_deep_seq", lambda: deep_seq(MAX_ARG_DEPTH), f"more than {MAX_ARG_DEPTH} levels"),
    Forged("too_long_seq", lambda: returning(method("v", "view", X, *[const(1)] * 100)), "at most"),
    Forged("object_state", lambda: state_with(W1, np.full((16, 784), None, dtype=object)), "float dtype"),
    Forged("int_state", lambda: state_with(W1, np.zeros((16, 784), np.int64)), "float dtype"),
    Forged("complex_state", lambda: state_with(W1, np.zeros((16, 784), np.complex64)), "float dtype"),
    Forged("string_state", lambda: state_with(W1, np.full((16, 784), "x")), "float dtype"),
    Forged("list_state", lambda: state_with(W1, [[0.0] * 784] * 16), "not an array"),
    Forged("transposed_state", lambda: state_with(W1, np.zeros((784, 16), np.float32)), "have shape (784, 16)"),
    Forged("huge_state_array_for_a_small_layer", lambda: state_with(W1, np.zeros((16, 785), np.float32)),
           "have shape"),
    Forged("extra_state_key", lambda: state_with(f"{FIRST['target']}.backdoor", np.zeros(1, np.float32)),
           "belong to no layer"),
    Forged("state_of_no_layer", lambda: state_with("os.environ", np.zeros(1, np.float32)), "belong to no layer"),
    Forged("state_key_not_a_string", lambda: state_with(7, np.zeros(1, np.float32)), "belong to no layer"),
    Forged("missing_weight", lambda: edit(lambda e: e["state"].pop(W1)), "has no weight"),
    Forged("state_not_a_dict", lambda: edit(lambda e: e.__setitem__("state", "os.environ")), "not a graph and"),
    Forged("graph_not_a_list", lambda: edit(lambda e: e.__setitem__("graph", {"os": "system"})), "not a list"),
    Forged("export_not_a_dict", lambda: "__import__('os').system('id')", "not a graph and"),
    Forged("conv_layer", lambda: returning(layer("conv", "torch.nn.modules.conv.Conv2d", {"in_channels": 1})),
           "not an MLP's: 'Conv2d'"),
    Forged("module_named_like_a_function", lambda: returning(layer("m", "os.system", {})), "not an MLP's: 'system'"),
    *(Forged(f"function_{f}", lambda f=f: returning(fn("f", f, const("id"))), "not an MLP's")
      for f in ("builtins.eval", "builtins.exec", "os.system", "torch.load", "builtins.__import__",
                "builtins.open", "torch.nn.functional.conv2d")),
    *(Forged(f"method_{m}", lambda m=m: returning(method("m", m, X)), "not an MLP's")
      for m in ("__reduce_ex__", "numpy", "tolist", "__setitem__", "expand", "repeat", "data_ptr")),
    Forged("huge_string_constant", lambda: returning(method("v", "view", X, const("A" * 10**6))), "short string"),
    Forged("huge_int_constant", lambda: returning(method("v", "view", X, const(10**100))), "an int up to"),
    Forged("huge_node_name", lambda: returning(method("v" * 10**6, "view", X, const(-1))), "name or target"),
    Forged("int_squarings", lambda: squarings(40), "an int larger than", on_call=True),
    Forged("string_times_a_number", lambda: returning(fn("m", "_operator.mul", const("ab"), const(10**9))),
           "other than tensors and numbers", on_call=True),
    Forged("shape_times_a_number", lambda: returning(method("s", "size", X), fn("m", "_operator.mul", ref("s"),
                                                                             const(10**9))),
           "other than tensors and numbers", on_call=True),
    Forged("broadcast_blowup", lambda: returning(
        method("s", "size", X, const(0)), method("a", "view", X, ref("s"), const(784), const(1)),
        method("b", "view", X, ref("s"), const(1), const(784)), fn("m", "_operator.mul", ref("a"), ref("b")),
        method("v", "view", ref("m"), ref("s"), const(-1))), "bytes per image", on_call=True),
    Forged("layer_on_two_inputs", lambda: returning({**layer("again", LINEAR, {"in_features": 784, "out_features": 16}),
                                                     "target": FIRST["target"], "args": [X, X]}),
           "other than one tensor", on_call=True),
    Forged("output_not_a_tensor", lambda: edit(lambda e: e["graph"][-1].__setitem__("args", [const(1)])),
           "one row of scores per image", on_call=True),
    Forged("output_of_the_wrong_shape", lambda: returning(method("v", "view", X, const(-1))),
           "one row of scores per image", on_call=True),
    Forged("shapes_that_do_not_chain", unchained, "failed: RuntimeError", on_call=True),
]


@pytest.mark.parametrize("case", FORGED, ids=[case.name for case in FORGED])
def test_a_forged_export_is_refused(case: Forged) -> None:
    export = case.export()
    x = torch.zeros(BATCH, 784)
    with bounded_memory(), pytest.raises(NotAnMLP) as refused:
        model = GraphModel(export)
        assert case.on_call, "refused only when evaluated, though the plain data shows the problem"
        model(x)
    message = str(refused.value)
    assert case.reason in message, message[:300]
    assert_clean(message)


def test_the_forged_cases_are_distinct() -> None:
    assert len({case.name for case in FORGED}) == len(FORGED) >= 20


# --- honest models ----------------------------------------------------------------------------------

class CustomForward(nn.Module):
    """The reshaping and functional calls students write in a forward."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(784, 64)
        self.norm = nn.BatchNorm1d(64)
        self.out = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(x.shape[0], -1)
        x = x.reshape(-1, 784)
        x = torch.flatten(x, 1)
        h = F.relu(self.norm(self.hidden(x)))
        h = F.dropout(h, 0.2, training=self.training)
        h = h.view(x.size(0), -1)
        return F.log_softmax(self.out(h), dim=1)


class EveryAllowedCall(nn.Module):
    """Each allowlisted function, method and operator once, as torch.fx records them."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(784, 48), nn.Linear(48, 48), nn.Linear(48, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :784][..., :].contiguous().float()
        x = x.view((x.size(0), -1)).flatten(1).unsqueeze(1).squeeze(1)
        h = torch.relu(self.a(x)) + torch.tanh(self.a(x)) * 0.5 - torch.sigmoid(self.a(x)) / 2
        h = F.gelu(h, approximate="tanh") + F.leaky_relu(h, 0.2) + F.elu(h) + F.silu(h) + F.sigmoid(h) + F.tanh(h)
        h = 1 - h.relu() + h.sigmoid() + h.tanh()
        h = F.relu(self.b(h), inplace=True)
        h = self.b(h) + h  # a residual, and one layer used twice
        return torch.log_softmax(self.c(h), 1) + F.softmax(self.c(h), dim=1) + self.c(h).softmax(1) + \
            torch.softmax(self.c(h), dim=1) + self.c(h).log_softmax(dim=1)


class InPlaceOnInput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(784, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(x, inplace=True))


def _lecture_mlp() -> nn.Module:
    sizes = (784, 512, 256, 128, 64, 10)
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes, sizes[1:], strict=False):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


HANDWRITTEN: dict[str, Callable[[], nn.Module]] = {
    "lecture_mlp": _lecture_mlp,
    "normalisation_layers": lambda: nn.Sequential(
        nn.Flatten(), nn.Linear(784, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Dropout(0.3),
        nn.Linear(64, 32), nn.LayerNorm(32), nn.GELU(), nn.Linear(32, 10)),
    "layer_variants": lambda: nn.Sequential(
        nn.Linear(784, 64, bias=False), nn.BatchNorm1d(64, affine=False), nn.LeakyReLU(0.1),
        nn.Linear(64, 32), nn.BatchNorm1d(32, track_running_stats=False), nn.ELU(0.5),
        nn.Linear(32, 32), nn.LayerNorm(32, elementwise_affine=False), nn.SiLU(),
        nn.Linear(32, 32), nn.LayerNorm(32, bias=False), nn.Tanh(), nn.Identity(),
        nn.Linear(32, 32), nn.Sigmoid(), nn.GELU("tanh"), nn.Linear(32, 10), nn.Softmax(dim=1), nn.LogSoftmax(1)),
    "nested_sequentials": lambda: nn.Sequential(
        nn.Sequential(nn.Linear(784, 32), nn.ReLU()), nn.Sequential(nn.Sequential(nn.Linear(32, 10)))),
    "custom_forward": CustomForward,
    "every_allowed_call": EveryAllowedCall,
    "in_place_on_the_input": InPlaceOnInput,
}


def _sample_models() -> dict[str, str]:
    """The model cell of each of the course's sample submissions (and the reference), one per distinct model."""
    models: dict[str, str] = {}
    for path in sorted(SAMPLES.glob("*.ipynb"), key=lambda p: (p.stem != "reference", p.stem)):
        cells = json.loads(path.read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        found = re.search(r"^model = nn\.Sequential\(.*?^\)", code, re.M | re.S)
        if found and found.group(0) not in models.values():
            models[path.stem] = found.group(0)
    return models


SAMPLE_MODELS = _sample_models()
CONV_SAMPLE = "conv_front_end"


def _sample(source: str) -> nn.Module:
    namespace: dict[str, Any] = {"nn": nn}
    exec(source, namespace)  # course material from the repository, not student code
    return namespace["model"]


def _randomised(model: nn.Module) -> nn.Module:
    """Running statistics away from their initial values, so evaluation mode visibly matters."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm1d) and module.running_mean is not None:
                module.running_mean.normal_(generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)
    return model


HONEST = {**{f"sample_{name}": (lambda s=source: _sample(s)) for name, source in SAMPLE_MODELS.items()
             if name != CONV_SAMPLE}, **HANDWRITTEN}


@pytest.mark.parametrize("name", sorted(HONEST))
def test_an_honest_model_is_rebuilt_exactly(name: str) -> None:
    torch.manual_seed(0)
    model = _randomised(HONEST[name]())
    rebuilt = GraphModel(over_the_wall(trace(model)))
    for batch in (BATCH, 7):
        x = torch.randn(batch, 784, generator=torch.Generator().manual_seed(batch))
        given = x.clone()
        with torch.no_grad():
            expected = model(x.clone())
        assert torch.equal(rebuilt(x), expected)
        assert torch.equal(x, given), "the grader's input was changed"


def test_the_course_samples_were_found() -> None:
    assert {"sample_reference", "sample_honest_tiny_mlp", "sample_linear_model"} <= set(HONEST)
    assert CONV_SAMPLE in SAMPLE_MODELS


def test_the_conv_sample_is_not_an_mlp() -> None:
    with pytest.raises(NotAnMLP) as refused:
        GraphModel(trace(_sample(SAMPLE_MODELS[CONV_SAMPLE])))
    assert not isinstance(refused.value, ModelFailed)
    assert str(refused.value) == "the model uses parts that are not an MLP's: 'Conv2d', 'Unflatten'"


def test_a_cnn_is_not_an_mlp() -> None:
    cnn = nn.Sequential(nn.Unflatten(1, (1, 28, 28)), nn.Conv2d(1, 8, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(8 * 13 * 13, 10))
    with pytest.raises(NotAnMLP, match="Conv2d.*MaxPool2d"):
        GraphModel(trace(cnn))


# --- what the grader concludes and tells the student ------------------------------------------------

SETTINGS = {"budget_seconds": 300, "budget_cpu_seconds": 600, "threshold": 0.95, "max_noise_drop": 0.1,
            "report_tolerance": 0.005, "evaluation_cpu_seconds": 60, "evaluation_memory_mb": 2048}


@pytest.fixture(scope="module")
def tiny_test_split(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A real test split and the stand-in a notebook saw (here: the same images)."""
    root = tmp_path_factory.mktemp("data")
    images = np.random.default_rng(0).integers(0, 256, (20, 28, 28), dtype=np.uint8)
    for folder in (root / "raw", root / "standin1"):
        folder.mkdir()
        mnist.write_idx(folder / mnist.TEST_IMAGES, images)
        mnist.write_idx(folder / mnist.TEST_LABELS, np.arange(20, dtype=np.uint8) % 10)
    return root / "raw", root / "standin1"


@pytest.mark.parametrize(("export", "flag"), [
    (returning(fn("g", "builtins.getattr", X, const("__globals__"))), NOT_MLP),
    (returning(method("v", "view", X, const(-1))), NO_MODEL),
    ("not an export", NOT_MLP),
    (linear_only(10**6, 10**6), NOT_MLP),
], ids=["forged", "fails_to_run", "not_an_export", "huge_layer"])
@pytest.mark.process
def test_measure_flags_and_explains(tiny_test_split: tuple[Path, Path], export: Any, flag: str) -> None:
    run = RunExport(export=export, names={"MEAN": 0.1, "STD": 0.3, "reported_accuracy": 0.5})
    result = measure(run, *tiny_test_split, SETTINGS, seed=1)
    assert flag in result["flags"] and "measured_accuracy" not in result
    assert_clean(result["error"])
    assert isinstance(result["architecture"], list) and isinstance(run.weights, str | None)


@pytest.mark.process
def test_measure_explains_a_non_numeric_mean(tiny_test_split: tuple[Path, Path]) -> None:
    run = RunExport(export=trace(nn.Sequential(nn.Linear(784, 10))), names={"MEAN": "x" * 10**6, "STD": 0.3})
    result = measure(run, *tiny_test_split, SETTINGS, seed=1)
    assert result["flags"] == [NO_MODEL] and result["error"].endswith("MEAN and STD must be numbers")


@pytest.mark.process
def test_measure_grades_an_honest_model(tiny_test_split: tuple[Path, Path]) -> None:
    run = RunExport(export=trace(nn.Sequential(nn.Linear(784, 10))), names={"MEAN": 0.1, "STD": 0.3})
    assert 0.0 <= measure(run, *tiny_test_split, SETTINGS, seed=1)["measured_accuracy"] <= 1.0
