"""A trained model across the wall: traced in the kernel into a graph of plain data plus its weights,
rebuilt here from an allowlist of MLP operations, and only then evaluated, by the grader.

The export is written by the student's kernel, so it may be forged: any graph, any state. Nothing
in it is looked up by name outside the tables below, every cap is checked on the plain data before
anything is built, and the rebuilt graph only computes on tensors derived from its input and its own
weights. Every rejection is a NotAnMLP whose message names the offending part in at most SHOWN
characters of the student's own text, never a repr of a grader object.
"""

from __future__ import annotations

import hashlib
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

EXPORTER_SOURCE = r'''
def __autograder_trace(model):
    import torch, torch.fx
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"the model is a {type(model).__name__}, not a torch.nn.Module")
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
        if value is Ellipsis:
            return {"ellipsis": None}
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


def __autograder_export_model(name):
    from IPython import get_ipython
    return __autograder_trace(get_ipython().user_ns[name])
'''

# Caps, all checked on the plain data before anything is built or evaluated.
MAX_NODES = 256  # torch.fx gives ~3 nodes per MLP layer (the reference has 9): room for ~80 layers
MAX_ARG_DEPTH = 4  # x[:, 0] is seq > slice > const (depth 3); nothing an MLP writes goes deeper
MAX_SEQ = 8  # entries of one args list, kwargs, tuple or shape: MLP tensors have a few dimensions
MAX_ARGUMENTS = 4096  # argument values in the whole graph: an MLP's node has ~3, 256 nodes ~800
MAX_TEXT = 128  # names, targets, string constants: fx names, module paths and 'tanh' are far shorter
MAX_SETTINGS = 32  # entries of one layer's settings: the exporter records at most 21
MAX_INT = 2**31 - 1  # int constants and int results (shapes, dims): keeps number arithmetic O(1)
MAX_FEATURES = 2**16  # one layer's size: no MNIST MLP comes near (784 x 2**16 is 2.5 x MAX_PARAMETERS)
MAX_PARAMETERS = 20_000_000  # weights applied per image, every use of a layer counted: ~37x the
# reference's 0.54 M, and it bounds what one evaluation multiplies (about 2 x this many flops per image)
MAX_BYTES_PER_IMAGE = 2**18  # all intermediate values of one forward pass, per input image: the
# reference needs ~9 KB, a 2048-wide MLP with 4 hidden layers and BatchNorm (14 M parameters) ~130 KB;
# at the grader's batch of 2000 images the cap is 512 MB
SHOWN = 80  # characters of student text a message repeats

DTYPES = ("float16", "bfloat16", "float32", "float64", "int32", "int64", "bool")
FLOAT_STATE = (np.float16, np.float32, np.float64)  # weights arrive as numpy arrays of these
RUNNING_STATS = ("running_mean", "running_var", "num_batches_tracked")
ATTRIBUTES = {"shape"}  # x.shape[0]: the only attribute torch.fx records for an MLP's forward
METHODS = {"view", "reshape", "flatten", "relu", "sigmoid", "tanh", "size", "float", "contiguous", "squeeze",
           "unsqueeze", "softmax", "log_softmax"}
LINEAR, LAYER_NORM = "torch.nn.modules.linear.Linear", "torch.nn.modules.normalization.LayerNorm"
OPTIONAL_WEIGHTS = {LINEAR: {"bias"}, LAYER_NORM: {"bias"}}  # bias=False exports no bias


class NotAnMLP(ValueError):
    """The export is not a graph of allowlisted MLP operations (or it is forged or malformed)."""


class ModelFailed(NotAnMLP):
    """The graph is allowed, but evaluating it on the grader's images failed."""


def _show(value: object) -> str:
    """The student's text, short; for anything else only its type name."""
    if type(value) is str:
        return repr(value[:SHOWN]) + ("..." if len(value) > SHOWN else "")
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiouAEIOU' else 'a'} {name}"


def _is_int(value: object) -> bool:
    return type(value) is int and abs(value) <= MAX_INT


def _is_number(value: object) -> bool:
    return _is_int(value) or type(value) is float


def _is_text(value: object) -> bool:
    return type(value) is str and len(value) <= MAX_TEXT


def _is_setting(value: object) -> bool:
    """A layer setting as the exporter writes it: a scalar, or a shape as a list of ints."""
    if isinstance(value, list):
        return len(value) <= MAX_SEQ and all(_is_int(v) for v in value)
    return value is None or type(value) in (bool, float) or _is_int(value) or _is_text(value)


def weights_hash(state: Any) -> str:
    """The state's fingerprint; a forged state (not numeric arrays) hashes without failing."""
    digest = hashlib.sha256()
    entries = state.items() if isinstance(state, dict) else []
    for key, value in sorted((kv for kv in entries if isinstance(kv[0], str)), key=lambda kv: kv[0]):
        if isinstance(value, np.ndarray | np.generic) and not np.asarray(value).dtype.hasobject:
            array = np.ascontiguousarray(value)
            digest.update(f"{key}|{array.dtype.str}|{array.shape}|".encode())
            digest.update(array.tobytes())
        else:
            digest.update(f"{key}|not an array|".encode())
    return digest.hexdigest()


def parameter_count(state: Any) -> int:
    if not isinstance(state, dict):
        return 0
    return int(sum(np.size(v) for k, v in state.items() if isinstance(k, str) and not k.endswith(RUNNING_STATS)
                   and isinstance(v, np.ndarray | np.generic)))


def architecture(graph: Any) -> list[str]:
    """A short readable description: the layer types in order (of any export, even a forged one)."""
    parts: list[str] = []
    for node in graph[:MAX_NODES] if isinstance(graph, list) else []:
        if not isinstance(node, dict) or not isinstance(node.get("target"), str):
            continue
        if node.get("op") == "call_module" and isinstance(node.get("module"), str):
            name = node["module"].rsplit(".", 1)[-1][:SHOWN]
            config = node.get("config")
            if isinstance(config, dict) and _is_int(config.get("in_features")) and _is_int(config.get("out_features")):
                name += f"({config['in_features']}->{config['out_features']})"
            parts.append(name)
        elif node.get("op") in ("call_function", "call_method"):
            parts.append(node["target"].rsplit(".", 1)[-1][:SHOWN])
    return parts


# The graph, parsed: arguments become templates (constants as themselves, tuples for sequences).
@dataclass(frozen=True)
class _Ref:
    name: str


@dataclass(frozen=True)
class _Slice:
    parts: tuple[Any, Any, Any]


@dataclass(frozen=True)
class _Node:
    name: str
    op: str
    target: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass
class _Layer:
    kind: str
    config: dict[str, Any]
    uses: int = 1


def _sequence(value: object, what: str) -> list[Any] | tuple[Any, ...]:
    if not isinstance(value, list | tuple) or len(value) > MAX_SEQ:
        raise NotAnMLP(f"{what} is not a list of at most {MAX_SEQ} entries")
    return value


def _constant(value: object) -> Any:
    if value is None or type(value) in (bool, float) or _is_int(value) or _is_text(value):
        return value
    raise NotAnMLP(f"a constant that is not a bool, an int up to {MAX_INT}, a float or a short string: "
                   f"{_show(value)}")


class _Parser:
    """Turns the plain graph into nodes, refusing anything outside the allowlist or over a cap."""

    def __init__(self) -> None:
        self.defined: set[str] = set()
        self.arguments = 0
        self.layers: dict[str, _Layer] = {}
        self.unknown: set[str] = set()  # parts that are not an MLP's, reported together

    def graph(self, graph: object) -> list[_Node]:
        if not isinstance(graph, list) or not graph:
            raise NotAnMLP("the export's graph is not a list of nodes")
        if len(graph) > MAX_NODES:
            raise NotAnMLP(f"the graph has {len(graph)} nodes, more than the {MAX_NODES} allowed")
        nodes = [self.node(raw) for raw in graph]
        ops = [node.op for node in nodes]
        if ops[0] != "placeholder" or ops.count("placeholder") != 1:
            raise NotAnMLP("the graph must start with its one input")
        if ops[-1] != "output" or ops.count("output") != 1:
            raise NotAnMLP("the graph must end with its one output")
        if self.unknown:
            raise NotAnMLP("the model uses parts that are not an MLP's: " + ", ".join(sorted(self.unknown)))
        return nodes

    def node(self, raw: object) -> _Node:
        if not isinstance(raw, dict):
            raise NotAnMLP("a node of the graph is not a mapping")
        name, op, target = raw.get("name"), raw.get("op"), raw.get("target")
        if not _is_text(name) or not _is_text(target):
            raise NotAnMLP(f"a node's name or target is not a string of at most {MAX_TEXT} characters: "
                           f"{_show(name)}, {_show(target)}")
        if name in self.defined:
            raise NotAnMLP(f"two nodes are named {_show(name)}")
        kwargs = raw.get("kwargs", {})
        if not isinstance(kwargs, dict) or len(kwargs) > MAX_SEQ or not all(_is_text(k) for k in kwargs):
            raise NotAnMLP(f"node {_show(name)}: its keyword arguments are not a short mapping")
        node = _Node(name, op, target, tuple(self.template(a, 1) for a in _sequence(raw.get("args", []), "args")),
                     {k: self.template(v, 1) for k, v in kwargs.items()})
        self.check(node, raw)
        self.defined.add(name)  # only now: an argument may reference earlier nodes only
        return node

    def template(self, spec: object, depth: int) -> Any:
        if depth > MAX_ARG_DEPTH:
            raise NotAnMLP(f"arguments nested more than {MAX_ARG_DEPTH} levels deep")
        self.arguments += 1
        if self.arguments > MAX_ARGUMENTS:
            raise NotAnMLP(f"more than {MAX_ARGUMENTS} argument values in the graph")
        if not isinstance(spec, dict) or len(spec) != 1:
            raise NotAnMLP("an argument is not a node, constant, sequence, slice or dtype")
        ((kind, value),) = spec.items()
        if kind == "node":
            if not isinstance(value, str) or value not in self.defined:
                raise NotAnMLP(f"an argument refers to {_show(value)}, which is not an earlier node")
            return _Ref(value)
        if kind == "seq":
            return tuple(self.template(v, depth + 1) for v in _sequence(value, "a sequence"))
        if kind == "slice":
            if len(_sequence(value, "a slice")) != 3:
                raise NotAnMLP("a slice is not (start, stop, step)")
            return _Slice(tuple(self.template(v, depth + 1) for v in value))  # type: ignore[arg-type]
        if kind == "dtype":
            return _dtype(value)
        if kind == "ellipsis" and value is None:
            return Ellipsis
        if kind == "const":
            return _constant(value)
        raise NotAnMLP(f"an argument of unknown kind {_show(kind)}")

    def check(self, node: _Node, raw: dict[str, Any]) -> None:
        if node.op in ("placeholder", "output"):
            if node.kwargs or len(node.args) != (1 if node.op == "output" else 0):
                raise NotAnMLP(f"the graph's {node.op} has unexpected arguments")
        elif node.op == "call_module":
            self.layer(node.target, raw.get("module"), raw.get("config", {}))
        elif node.op == "call_function":
            if node.target not in _functions():
                self.unknown.add(_show(node.target))
            elif node.target == "builtins.getattr":
                _check_getattr(node)
        elif node.op == "call_method":
            if node.target not in METHODS:
                self.unknown.add(f".{_show(node.target)}()")
        elif node.op == "get_attr":
            self.unknown.add(f"parameter access {_show(node.target)}")
        else:
            raise NotAnMLP(f"an operation of unknown kind {_show(node.op)}")

    def layer(self, target: str, kind: object, config: object) -> None:
        if not isinstance(kind, str) or kind not in LAYERS:
            self.unknown.add(_show(kind.rsplit(".", 1)[-1]) if isinstance(kind, str) else _show(kind))
        elif not isinstance(config, dict) or len(config) > MAX_SETTINGS or not all(
                _is_text(k) and _is_setting(v) for k, v in config.items()):
            raise NotAnMLP(f"layer {_show(target)}: its settings are not a short mapping of numbers, "
                           "strings and shapes")
        elif target not in self.layers:
            self.layers[target] = _Layer(kind, config)
        elif (self.layers[target].kind, self.layers[target].config) != (kind, config):
            raise NotAnMLP(f"layer {_show(target)} is declared twice, differently")
        else:
            self.layers[target].uses += 1


def _check_getattr(node: _Node) -> None:
    if node.kwargs or len(node.args) != 2 or not isinstance(node.args[1], str) or node.args[1] not in ATTRIBUTES:
        attribute = node.args[1] if len(node.args) == 2 else None
        raise NotAnMLP(f"getattr of {_show(attribute)} is not allowed (only {', '.join(sorted(ATTRIBUTES))})")


def _dtype(name: object) -> Any:
    import torch

    table = {f"torch.{n}": getattr(torch, n) for n in DTYPES}  # fixed names, never the student's
    if not isinstance(name, str) or name not in table:
        raise NotAnMLP(f"dtype {_show(name)} is not allowed")
    return table[name]


class _Config:
    """A layer's settings as the kernel sent them, each read with the type it must have."""

    def __init__(self, raw: dict[str, Any], layer: str) -> None:
        self.raw, self.layer = raw, layer  # flat and short: checked when parsed

    def _get(self, key: str, default: Any, valid: Callable[[Any], bool], what: str) -> Any:
        value = self.raw.get(key, default)
        if not valid(value):
            raise NotAnMLP(f"layer {_show(self.layer)}: {key} must be {what}")
        return value

    def size(self, key: str) -> int:
        return self._get(key, None, lambda v: _is_int(v) and 0 < v <= MAX_FEATURES, f"an int from 1 to {MAX_FEATURES}")

    def sizes(self, key: str) -> list[int]:
        def valid(v: Any) -> bool:
            return (isinstance(v, list) and 0 < len(v) <= MAX_SEQ and all(_is_int(s) and s > 0 for s in v)
                    and math.prod(v) <= MAX_FEATURES)
        return self._get(key, None, valid, f"a list of sizes with a product of at most {MAX_FEATURES}")

    def integer(self, key: str, default: int | None) -> Any:
        return self._get(key, default, lambda v: _is_int(v) or (v is None and default is None), "an int")

    def number(self, key: str, default: float, low: float = -math.inf, high: float = math.inf) -> float:
        return self._get(key, default, lambda v: _is_number(v) and low <= v <= high, f"a number in [{low}, {high}]")

    def flag(self, key: str, default: bool) -> bool:
        return self._get(key, default, lambda v: type(v) is bool, "true or false")

    def choice(self, key: str, default: str, options: tuple[str, ...]) -> str:
        return self._get(key, default, lambda v: v in options, f"one of {', '.join(options)}")


_ACTIVATIONS = "torch.nn.modules.activation"
LAYERS: dict[str, Callable[[Any, _Config], Any]] = {  # (torch.nn, settings) -> the layer, built on meta
    f"{_ACTIVATIONS}.ReLU": lambda nn, c: nn.ReLU(),
    f"{_ACTIVATIONS}.LeakyReLU": lambda nn, c: nn.LeakyReLU(c.number("negative_slope", 0.01)),
    f"{_ACTIVATIONS}.GELU": lambda nn, c: nn.GELU(approximate=c.choice("approximate", "none", ("none", "tanh"))),
    f"{_ACTIVATIONS}.ELU": lambda nn, c: nn.ELU(c.number("alpha", 1.0)),
    f"{_ACTIVATIONS}.SiLU": lambda nn, c: nn.SiLU(),
    f"{_ACTIVATIONS}.Tanh": lambda nn, c: nn.Tanh(),
    f"{_ACTIVATIONS}.Sigmoid": lambda nn, c: nn.Sigmoid(),
    f"{_ACTIVATIONS}.Softmax": lambda nn, c: nn.Softmax(dim=c.integer("dim", None)),
    f"{_ACTIVATIONS}.LogSoftmax": lambda nn, c: nn.LogSoftmax(dim=c.integer("dim", None)),
    LINEAR: lambda nn, c: nn.Linear(c.size("in_features"), c.size("out_features")),
    "torch.nn.modules.linear.Identity": lambda nn, c: nn.Identity(),
    "torch.nn.modules.dropout.Dropout": lambda nn, c: nn.Dropout(c.number("p", 0.5, 0.0, 1.0)),
    "torch.nn.modules.flatten.Flatten": lambda nn, c: nn.Flatten(c.integer("start_dim", 1), c.integer("end_dim", -1)),
    "torch.nn.modules.batchnorm.BatchNorm1d": lambda nn, c: nn.BatchNorm1d(
        c.size("num_features"), eps=c.number("eps", 1e-5, 0.0), affine=c.flag("affine", True),
        track_running_stats=c.flag("track_running_stats", True)),
    LAYER_NORM: lambda nn, c: nn.LayerNorm(
        c.sizes("normalized_shape"), eps=c.number("eps", 1e-5, 0.0),
        elementwise_affine=c.flag("elementwise_affine", True)),
}


# What a node may compute, each checking its arguments' types first.
def _is_tensor(value: object) -> bool:
    import torch

    return type(value) is torch.Tensor


def _is_option(value: object) -> bool:
    """A setting passed to a torch function or method: never a tensor, never a grader object."""
    import torch

    if isinstance(value, tuple):  # a shape: view((n, -1)), torch.Size included
        return all(_is_int(v) for v in value)
    return value is None or type(value) in (bool, float, torch.dtype) or _is_int(value) or _is_text(value)


def _is_index(value: object, nested: bool = False) -> bool:
    if isinstance(value, tuple) and not nested:
        return all(_is_index(v, True) for v in value)
    if isinstance(value, slice):
        return all(v is None or _is_int(v) for v in (value.start, value.stop, value.step))
    return value is None or value is Ellipsis or _is_int(value)


def _on_tensor(function: Callable[..., Any], name: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        if not args or not _is_tensor(args[0]) or not all(map(_is_option, (*args[1:], *kwargs.values()))):
            raise NotAnMLP(f"{name} is applied to something other than a tensor and its settings")
        return function(*args, **kwargs)
    return call


def _arithmetic(function: Callable[[Any, Any], Any], name: str) -> Callable[..., Any]:
    def call(a: Any, b: Any) -> Any:
        if not all(_is_tensor(v) or _is_number(v) for v in (a, b)):
            raise NotAnMLP(f"{name} is applied to something other than tensors and numbers")
        result = function(a, b)
        if type(result) is int and not _is_int(result):
            raise NotAnMLP(f"{name} gives an int larger than {MAX_INT}")
        return result
    return call


def _getattr(receiver: Any, attribute: str) -> Any:
    if not _is_tensor(receiver):
        raise NotAnMLP(f"getattr {_show(attribute)} of {_show(receiver)}, not of a tensor")
    return getattr(receiver, attribute)  # attribute is in ATTRIBUTES: checked when parsed


def _getitem(container: Any, index: Any) -> Any:
    if not (_is_tensor(container) or isinstance(container, tuple)) or not _is_index(index):
        raise NotAnMLP(f"getitem of {_show(container)} by {_show(index)}: only ints, slices, None and ... "
                       "index a tensor or a shape")
    return container[index]


@cache
def _functions() -> dict[str, Callable[..., Any]]:
    import torch
    import torch.nn.functional as F

    def dropout(x: Any, *args: Any, **kwargs: Any) -> Any:
        return x  # evaluation mode

    torch_functions = "torch._VariableFunctionsClass"  # how torch.flatten & co. are traced
    on_tensor = {
        f"{torch_functions}.flatten": torch.flatten, f"{torch_functions}.relu": torch.relu,
        f"{torch_functions}.sigmoid": torch.sigmoid, f"{torch_functions}.tanh": torch.tanh,
        f"{torch_functions}.softmax": torch.softmax, f"{torch_functions}.log_softmax": torch.log_softmax,
        "torch.nn.functional.relu": F.relu, "torch.nn.functional.leaky_relu": F.leaky_relu,
        "torch._C._nn.gelu": F.gelu, "torch.nn.functional.elu": F.elu, "torch.nn.functional.silu": F.silu,
        "torch.nn.functional.sigmoid": torch.sigmoid, "torch.nn.functional.tanh": torch.tanh,
        "torch.nn.functional.softmax": F.softmax, "torch.nn.functional.log_softmax": F.log_softmax,
        "torch.nn.functional.dropout": dropout,
    }
    arithmetic = {f"_operator.{op}": getattr(operator, op) for op in ("add", "sub", "mul", "truediv")}
    return {
        **{name: _on_tensor(function, name.rsplit(".", 1)[-1]) for name, function in on_tensor.items()},
        **{name: _arithmetic(function, name.rsplit(".", 1)[-1]) for name, function in arithmetic.items()},
        "_operator.getitem": _getitem, "builtins.getattr": _getattr,
    }


def _call_method(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    import torch

    if not args or not _is_tensor(args[0]) or not all(map(_is_option, (*args[1:], *kwargs.values()))):
        raise NotAnMLP(f".{name}() is called on something other than a tensor, or with something other than "
                       "settings")
    return getattr(torch.Tensor, name)(*args, **kwargs)  # name is in METHODS: checked when parsed


def _call_module(module: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if len(args) != 1 or kwargs or not _is_tensor(args[0]):
        raise NotAnMLP(f"layer {_show(name)} is applied to something other than one tensor")
    return module(args[0])


def _checked_value(value: Any, node: _Node) -> Any:
    """What a node gave must be something the graph computes on: tensors, shapes and numbers."""
    items = value if isinstance(value, tuple) else (value,)
    if len(items) > MAX_SEQ or not all(_is_tensor(v) or _is_number(v) for v in items):
        raise NotAnMLP(f"node {_show(node.name)} gives {_show(value)}, not a tensor, shape or number")
    return value


def _bytes(value: Any) -> int:
    items = value if isinstance(value, tuple) else (value,)
    return sum(v.numel() * v.element_size() for v in items if _is_tensor(v))


def _resolve(template: Any, values: dict[str, Any]) -> Any:
    if isinstance(template, _Ref):
        return values[template.name]
    if isinstance(template, tuple):
        return tuple(_resolve(t, values) for t in template)
    if isinstance(template, _Slice):
        return slice(*(_resolve(t, values) for t in template.parts))
    return template


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:2 * SHOWN] if text else ""


class GraphModel:
    """The exported graph, interpreted with allowlisted operations only."""

    def __init__(self, export: Any) -> None:
        if not isinstance(export, dict) or not isinstance(export.get("state"), dict):
            raise NotAnMLP("the export is not a graph and a state")
        parser = _Parser()
        self.nodes = parser.graph(export.get("graph"))
        self.meta = {target: _build(layer, target) for target, layer in parser.layers.items()}
        used = sum(layer.uses * _declared(self.meta[target]) for target, layer in parser.layers.items())
        if used > MAX_PARAMETERS:
            raise NotAnMLP(f"the layers apply {used} parameters per image, more than the {MAX_PARAMETERS} allowed")
        own = _split_state(export["state"], parser.layers, self.meta)
        self.modules = {target: _load(parser.layers[target], target, self.meta[target], weights)
                        for target, weights in own.items()}
        self._checked: set[tuple[Any, ...]] = set()  # input shapes and dtypes the dry run passed

    def __call__(self, x: Any) -> Any:
        import torch

        key = (tuple(x.shape), x.dtype)
        with torch.no_grad():
            if key not in self._checked:  # shapes never depend on the data here: one dry run per shape
                budget = max(1, x.shape[0] if x.dim() else 1) * MAX_BYTES_PER_IMAGE
                self._run(self.meta, torch.empty(x.shape, dtype=x.dtype, device="meta"), budget)
                self._checked.add(key)
            return self._run(self.modules, x.clone(), None)  # a copy: in-place ops must not touch the caller's

    def _run(self, modules: dict[str, Any], x: Any, budget: int | None) -> Any:
        """The graph on `x`; the parser made the first node the input and the last the output."""
        first, *inner, last = self.nodes
        values: dict[str, Any] = {first.name: x}
        used = 0
        for node in inner:
            args = tuple(_resolve(a, values) for a in node.args)
            kwargs = {k: _resolve(v, values) for k, v in node.kwargs.items()}
            values[node.name] = _checked_value(_evaluate(node, modules, args, kwargs), node)
            used += _bytes(values[node.name])
            if budget is not None and used > budget:
                raise ModelFailed(f"the model's intermediate values exceed {MAX_BYTES_PER_IMAGE} bytes per image "
                                  f"(at node {_show(node.name)})")
        return _checked_output(_resolve(last.args[0], values), x)


def _evaluate(node: _Node, modules: dict[str, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        if node.op == "call_module":
            return _call_module(modules[node.target], node.target, args, kwargs)
        if node.op == "call_method":
            return _call_method(node.target, args, kwargs)
        return _functions()[node.target](*args, **kwargs)
    except NotAnMLP:
        raise
    except Exception as error:  # noqa: BLE001 - torch's own complaint about the student's graph
        raise ModelFailed(f"node {_show(node.name)} ({_show(node.target)}) failed: {type(error).__name__}: "
                          f"{_first_line(error)}") from None


def _checked_output(value: Any, x: Any) -> Any:
    if not _is_tensor(value) or value.dim() != 2 or value.shape[0] != x.shape[0]:
        shape = tuple(value.shape) if _is_tensor(value) else _show(value)
        raise ModelFailed(f"the model maps {x.shape[0]} images to {shape}, not to one row of scores per image")
    return value


def _build(layer: _Layer, target: str) -> Any:
    """The layer with its settings on the meta device: shapes without memory."""
    import torch
    import torch.nn as nn

    config = _Config(layer.config, target)
    try:
        with torch.device("meta"):
            return LAYERS[layer.kind](nn, config)
    except NotAnMLP:
        raise
    except Exception as error:  # noqa: BLE001 - torch refusing a setting the checks above let through
        raise NotAnMLP(f"layer {_show(target)} cannot be built: {type(error).__name__}") from None


def _declared(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())


def _split_state(state: dict[Any, Any], layers: dict[str, _Layer], meta: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The state by layer; each array must be one its layer declares, with exactly that shape."""
    declared = {target: module.state_dict() for target, module in meta.items()}
    own: dict[str, dict[str, Any]] = {target: {} for target in layers}
    for key, value in state.items():
        target, _, name = key.rpartition(".") if isinstance(key, str) else ("", "", "")
        expected = declared[target].get(name) if target in declared else None
        if expected is None:
            raise NotAnMLP(f"weights {_show(key)} belong to no layer of the graph")
        _check_array(key, value, expected)
        own[target][name] = value
    for target, weights in own.items():
        missing = set(declared[target]) - set(weights) - OPTIONAL_WEIGHTS.get(layers[target].kind, set())
        if missing:
            raise NotAnMLP(f"layer {_show(target)} has no {', '.join(sorted(missing))}")
    return own


def _check_array(key: str, value: Any, expected: Any) -> None:
    if not isinstance(value, np.ndarray | np.generic):
        raise NotAnMLP(f"weights {_show(key)} are {_show(value)}, not an array")
    kinds = FLOAT_STATE if expected.dtype.is_floating_point else (np.int64,)
    if np.asarray(value).dtype.type not in kinds:
        raise NotAnMLP(f"weights {_show(key)} are not of a {'float' if kinds == FLOAT_STATE else 'int64'} dtype")
    if np.shape(value) != tuple(expected.shape):
        raise NotAnMLP(f"weights {_show(key)} have shape {np.shape(value)}, their layer needs "
                       f"{tuple(expected.shape)}")


def _load(layer: _Layer, target: str, meta: Any, weights: dict[str, Any]) -> Any:
    """The layer for real, holding the student's weights (as float32 / int64, like load_state_dict)."""
    import torch

    module = _build(layer, target)
    for name in set(module.state_dict()) - set(weights):  # an optional bias that is absent
        setattr(module, name, None)
        setattr(meta, name, None)
    tensors = {name: torch.from_numpy(np.array(value, dtype=np.float32 if np.issubdtype(value.dtype, np.floating)
                                                else np.int64)) for name, value in weights.items()}
    module.load_state_dict(tensors, strict=True, assign=True)
    return module.eval()
