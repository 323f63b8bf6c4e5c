"""Plain data across the sandbox wall: JSON, with arrays as base64 .npy (never a pickle).

This module is self-contained on purpose: its source is also sent into the student's kernel, so
both sides encode and decode the same way. Decoding is safe on untrusted input: json.loads and
numpy.load(allow_pickle=False) build only numbers, strings, lists, dicts and plain arrays.
"""

import base64
import inspect
import io
import json
import textwrap
import types

import numpy as np

MAX_DEPTH = 20


class NotPlainData(TypeError):
    pass


def _array_b64(array):
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def encode(value, depth=0):
    """A JSON-able form of `value`, which must be plain data (or, grader to kernel, a function)."""
    if depth > MAX_DEPTH:
        raise NotPlainData("data nested too deeply")
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, np.ndarray | np.generic):
        if np.asarray(value).dtype.hasobject:
            raise NotPlainData("an array of Python objects")
        return {"__ndarray__": _array_b64(value)}
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        return {"__tensor__": _array_b64(value.detach().cpu().numpy())}
    if isinstance(value, list | tuple):
        kind = "__list__" if isinstance(value, list) else "__tuple__"
        return {kind: [encode(item, depth + 1) for item in value]}
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise NotPlainData("a dict whose keys are not all strings")
        return {"__dict__": {str(k): encode(v, depth + 1) for k, v in value.items()}}
    if isinstance(value, types.FunctionType):
        return {"__function__": _function_payload(value, depth)}
    raise NotPlainData(
        f"a {type(value).__module__}.{type(value).__qualname__}: the grader accepts numbers, strings, "
        "numpy arrays, torch tensors, and lists, tuples and dicts of them"
    )


def _function_payload(function, depth):
    """A function written in a test, by source, with the plain data and modules it closes over."""
    closure = inspect.getclosurevars(function)
    captured, modules = {}, {}
    for name, value in {**closure.globals, **closure.nonlocals}.items():
        if isinstance(value, types.ModuleType):
            modules[name] = value.__name__
        else:
            captured[name] = encode(value, depth + 1)
    return {"name": function.__name__, "source": textwrap.dedent(inspect.getsource(function)),
            "captured": captured, "modules": modules}


def decode(data, depth=0, tensors=None):
    """The value `encode` made. `tensors` turns arrays that were tensors back into tensors."""
    if depth > MAX_DEPTH:
        raise ValueError("data nested too deeply")
    if data is None or isinstance(data, bool | int | float | str):
        return data
    if isinstance(data, list):
        raise ValueError("a bare list: lists are tagged")
    if not isinstance(data, dict) or len(data) != 1:
        raise ValueError("not data made by encode()")
    (kind, inner), = data.items()
    if kind in ("__ndarray__", "__tensor__"):
        array = np.load(io.BytesIO(base64.b64decode(inner)), allow_pickle=False)
        if array.ndim == 0 and kind == "__ndarray__":
            array = array[()]
        return tensors(array) if kind == "__tensor__" and tensors else array
    if kind in ("__list__", "__tuple__"):
        items = [decode(item, depth + 1, tensors) for item in inner]
        return items if kind == "__list__" else tuple(items)
    if kind == "__dict__":
        return {str(k): decode(v, depth + 1, tensors) for k, v in inner.items()}
    if kind == "__function__":
        return _rebuild_function(inner, tensors)
    raise ValueError(f"unknown tag {kind!r}")


def _rebuild_function(payload, tensors):
    import importlib

    namespace = {name: importlib.import_module(module) for name, module in payload["modules"].items()}
    namespace.update({name: decode(value, 1, tensors) for name, value in payload["captured"].items()})
    exec(compile(payload["source"], "<grader function>", "exec"), namespace)  # noqa: S102
    return namespace[payload["name"]]


def dumps(value):
    return json.dumps(encode(value), allow_nan=True)


def loads(text, tensors=None):
    return decode(json.loads(text), tensors=tensors)
