"""Grader -> kernel: plain data, plus functions written in a test, sent by source.

Tests may hand the student's code a function of their own (hw2 passes a loss to a gradient check);
it then runs in the kernel, which is fine: test code is trusted, the kernel is not. Only this
direction can carry code. The kernel rebuilds such functions with code that exists only as text
sent into the kernel (agent.py); nothing on the grader's side can turn data back into a function.
"""

from __future__ import annotations

import inspect
import textwrap
import types
from typing import Any

from autograder.execution import codec


def encode_request(value: Any, depth: int = 0) -> Any:
    """A JSON-able form of `value`: plain data (codec.encode), or containers holding test functions."""
    if isinstance(value, types.FunctionType):
        return {"__function__": _function_payload(value, depth)}
    if isinstance(value, list | tuple) and any(_holds_function(v) for v in value):
        kind = "__list__" if isinstance(value, list) else "__tuple__"
        return {kind: [encode_request(item, depth + 1) for item in value]}
    if isinstance(value, dict) and any(_holds_function(v) for v in value.values()):
        return {"__dict__": {str(k): encode_request(v, depth + 1) for k, v in value.items()}}
    return codec.encode(value, depth)


def _holds_function(value: Any) -> bool:
    if isinstance(value, types.FunctionType):
        return True
    if isinstance(value, list | tuple):
        return any(_holds_function(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_function(v) for v in value.values())
    return False


def _function_payload(function: types.FunctionType, depth: int) -> dict[str, Any]:
    """A function written in a test, by source, with the plain data and modules it closes over."""
    if depth > codec.MAX_DEPTH:
        raise codec.NotPlainData("functions nested too deeply")
    closure = inspect.getclosurevars(function)
    captured, modules = {}, {}
    for name, value in {**closure.globals, **closure.nonlocals}.items():
        if isinstance(value, types.ModuleType):
            modules[name] = value.__name__
        else:
            captured[name] = encode_request(value, depth + 1)
    return {"name": function.__name__, "source": textwrap.dedent(inspect.getsource(function)),
            "captured": captured, "modules": modules}
