"""A trained model across the wall: traced in the kernel into a graph of plain data plus its weights,
rebuilt here from an allowlist of MLP parts, and only then evaluated, by the grader.

Nothing the student wrote runs on this side: the graph names layer types and functions, each looked
up in the allowlist below; anything else (a convolution, a custom op) makes the model "not an MLP".
"""

from __future__ import annotations

import hashlib
import operator
from typing import Any

import numpy as np

EXPORTER_SOURCE = r'''
def __autograder_export_model(name):
    import torch, torch.fx
    from IPython import get_ipython
    model = get_ipython().user_ns[name]
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"`{name}` is a {type(model).__name__}, not a torch.nn.Module")
    model.eval()
    traced = torch.fx.symbolic_trace(model)
    config_keys = ("in_features", "out_features", "p", "negative_slope", "approximate", "alpha", "num_features",
                   "eps", "momentum", "affine", "track_running_stats", "normalized_shape", "elementwise_affine",
                   "start_dim", "end_dim", "dim", "kernel_size", "stride", "padding", "in_channels", "out_channels")

    def plain(value):
        if isinstance(value, torch.fx.Node):
            return {"node": value.name}
        if isinstance(value, (list, tuple)):
            return {"seq": [plain(v) for v in value]}
        if isinstance(value, slice):
            return {"slice": [plain(value.start), plain(value.stop), plain(value.step)]}
        if isinstance(value, torch.dtype):
            return {"dtype": str(value)}
        if value is None or isinstance(value, (bool, int, float, str)):
            return {"const": value}
        raise TypeError(f"the model's forward passes a {type(value).__name__}, which cannot be exported")

    nodes = []
    for node in traced.graph.nodes:
        entry = {"name": node.name, "op": node.op, "args": [plain(a) for a in node.args],
                 "kwargs": {k: plain(v) for k, v in node.kwargs.items()}}
        if node.op == "call_module":
            module = traced.get_submodule(node.target)
            entry["target"] = node.target
            entry["module"] = f"{type(module).__module__}.{type(module).__qualname__}"
            config = {}
            for key in config_keys:
                value = getattr(module, key, None)
                if isinstance(value, (bool, int, float, str)) or (
                        isinstance(value, tuple) and all(isinstance(v, int) for v in value)):
                    config[key] = list(value) if isinstance(value, tuple) else value
            entry["config"] = config
        elif node.op == "call_function":
            module_name = getattr(node.target, "__module__", None)
            entry["target"] = f"{module_name}.{getattr(node.target, '__qualname__', node.target)}"
        else:
            entry["target"] = str(node.target)
        nodes.append(entry)
    state = {key: value.detach().cpu().numpy() for key, value in traced.state_dict().items()}
    return {"graph": nodes, "state": state}
'''

ACTIVATIONS = {
    "torch.nn.modules.activation.ReLU": lambda nn, c: nn.ReLU(),
    "torch.nn.modules.activation.LeakyReLU": lambda nn, c: nn.LeakyReLU(c.get("negative_slope", 0.01)),
    "torch.nn.modules.activation.GELU": lambda nn, c: nn.GELU(approximate=c.get("approximate", "none")),
    "torch.nn.modules.activation.ELU": lambda nn, c: nn.ELU(c.get("alpha", 1.0)),
    "torch.nn.modules.activation.SiLU": lambda nn, c: nn.SiLU(),
    "torch.nn.modules.activation.Tanh": lambda nn, c: nn.Tanh(),
    "torch.nn.modules.activation.Sigmoid": lambda nn, c: nn.Sigmoid(),
    "torch.nn.modules.activation.Softmax": lambda nn, c: nn.Softmax(dim=c.get("dim")),
    "torch.nn.modules.activation.LogSoftmax": lambda nn, c: nn.LogSoftmax(dim=c.get("dim")),
}
MODULES = {
    **ACTIVATIONS,
    "torch.nn.modules.linear.Linear": lambda nn, c: nn.Linear(c["in_features"], c["out_features"]),
    "torch.nn.modules.linear.Identity": lambda nn, c: nn.Identity(),
    "torch.nn.modules.dropout.Dropout": lambda nn, c: nn.Dropout(c.get("p", 0.5)),
    "torch.nn.modules.flatten.Flatten": lambda nn, c: nn.Flatten(c.get("start_dim", 1), c.get("end_dim", -1)),
    "torch.nn.modules.batchnorm.BatchNorm1d": lambda nn, c: nn.BatchNorm1d(
        c["num_features"], eps=c.get("eps", 1e-5), affine=c.get("affine", True),
        track_running_stats=c.get("track_running_stats", True)),
    "torch.nn.modules.normalization.LayerNorm": lambda nn, c: nn.LayerNorm(
        c["normalized_shape"], eps=c.get("eps", 1e-5), elementwise_affine=c.get("elementwise_affine", True)),
}


def _functions() -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    def dropout(x: Any, *args: Any, **kwargs: Any) -> Any:
        return x  # evaluation mode

    return {
        "torch.flatten": torch.flatten, "torch.relu": torch.relu, "torch.sigmoid": torch.sigmoid,
        "torch.tanh": torch.tanh, "torch.nn.functional.relu": F.relu, "torch.nn.functional.leaky_relu": F.leaky_relu,
        "torch.nn.functional.gelu": F.gelu, "torch.nn.functional.elu": F.elu, "torch.nn.functional.silu": F.silu,
        "torch.nn.functional.sigmoid": torch.sigmoid, "torch.nn.functional.tanh": torch.tanh,
        "torch.nn.functional.softmax": F.softmax, "torch.nn.functional.log_softmax": F.log_softmax,
        "torch.nn.functional.dropout": dropout, "_operator.getitem": operator.getitem, "_operator.add": operator.add,
        "_operator.mul": operator.mul, "_operator.sub": operator.sub, "_operator.truediv": operator.truediv,
        "builtins.getattr": getattr,
    }


METHODS = {"view", "reshape", "flatten", "relu", "sigmoid", "tanh", "size", "float", "contiguous", "squeeze",
           "unsqueeze", "softmax", "log_softmax"}
RUNNING_STATS = ("running_mean", "running_var", "num_batches_tracked")


class NotAnMLP(ValueError):
    pass


def weights_hash(state: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for key in sorted(state):
        array = np.ascontiguousarray(state[key])
        digest.update(f"{key}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def parameter_count(state: dict[str, np.ndarray]) -> int:
    return int(sum(np.asarray(v).size for k, v in state.items() if not k.endswith(RUNNING_STATS)))


def architecture(graph: list[dict[str, Any]]) -> list[str]:
    """A short readable description: the layer types in order."""
    parts = []
    for node in graph:
        if node["op"] == "call_module":
            name = node["module"].rsplit(".", 1)[-1]
            config = node.get("config", {})
            if "in_features" in config:
                name += f"({config['in_features']}->{config['out_features']})"
            parts.append(name)
        elif node["op"] in ("call_function", "call_method"):
            parts.append(str(node["target"]).rsplit(".", 1)[-1])
    return parts


class GraphModel:
    """The exported graph, interpreted with allowlisted parts only."""

    def __init__(self, export: dict[str, Any]) -> None:
        import torch
        import torch.nn as nn

        self.graph = export["graph"]
        state = {k: torch.from_numpy(np.array(v)) for k, v in export["state"].items()}
        self.functions = _functions()
        self.modules: dict[str, Any] = {}
        problems = []
        for node in self.graph:
            op, target = node["op"], node.get("target")
            if op == "call_module":
                factory = MODULES.get(node["module"])
                if factory is None:
                    problems.append(node["module"].rsplit(".", 1)[-1])
                    continue
                module = factory(nn, node.get("config", {}))
                prefix = f"{target}."
                own = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
                if isinstance(module, nn.Linear) and "bias" not in own:
                    module = nn.Linear(module.in_features, module.out_features, bias=False)
                try:
                    module.load_state_dict(own, strict=True)
                except RuntimeError as error:
                    raise NotAnMLP(f"weights of {target} do not fit its layer: {error}") from error
                self.modules[target] = module.eval()
            elif op == "call_function" and target not in self.functions:
                problems.append(str(target))
            elif op == "call_method" and target not in METHODS:
                problems.append(f".{target}()")
            elif op == "get_attr":
                problems.append(f"parameter access {target}")
        if problems:
            raise NotAnMLP("the model uses parts that are not an MLP's: " + ", ".join(sorted(set(problems))))

    def _value(self, spec: dict[str, Any], values: dict[str, Any]) -> Any:
        import torch

        if "node" in spec:
            return values[spec["node"]]
        if "seq" in spec:
            return tuple(self._value(s, values) for s in spec["seq"])
        if "slice" in spec:
            return slice(*(self._value(s, values) for s in spec["slice"]))
        if "dtype" in spec:
            return getattr(torch, spec["dtype"].removeprefix("torch."))
        return spec["const"]

    def __call__(self, x: Any) -> Any:
        import torch

        values: dict[str, Any] = {}
        with torch.no_grad():
            for node in self.graph:
                args = [self._value(a, values) for a in node["args"]]
                kwargs = {k: self._value(v, values) for k, v in node["kwargs"].items()}
                op = node["op"]
                if op == "placeholder":
                    values[node["name"]] = x
                elif op == "call_module":
                    values[node["name"]] = self.modules[node["target"]](*args, **kwargs)
                elif op == "call_function":
                    values[node["name"]] = self.functions[node["target"]](*args, **kwargs)
                elif op == "call_method":
                    receiver, *rest = args
                    values[node["name"]] = getattr(receiver, node["target"])(*rest, **kwargs)
                elif op == "output":
                    return args[0]
        raise NotAnMLP("the model's graph has no output")
