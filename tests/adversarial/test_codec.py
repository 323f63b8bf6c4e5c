"""The grader-side decoder on hostile input: it returns plain data or raises ValueError, nothing else.

Everything a kernel sends is written by the student. These tests feed the decoder what a hostile
kernel could send, including arbitrary JSON (hypothesis), and check that no code ran: a canary file
that any executed payload would write never appears.
"""

from __future__ import annotations

import ast
import base64
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autograder.execution import agent, codec
from autograder.execution.outbound import encode_request

PACKAGE = Path(codec.__file__).resolve().parents[1]
PLAIN_TYPES = (type(None), bool, int, float, str, list, tuple, dict, np.ndarray, np.generic)


def _canary_source(canary: Path) -> str:
    return (f"import pathlib\np = pathlib.Path({str(canary)!r})\np.parent.mkdir(parents=True, exist_ok=True)\n"
            "p.write_text('ran')\ndef f(x=p.write_text('ran')):\n    return x\n")


def _function_payload(canary: Path) -> dict[str, Any]:
    return {"__function__": {"name": "f", "source": _canary_source(canary), "captured": {},
                             "modules": {"os": "os", "subprocess": "subprocess"}}}


def _npy(array: np.ndarray, allow_pickle: bool = False) -> str:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return base64.b64encode(buffer.getvalue()).decode()


def _assert_plain(value: Any) -> None:
    assert isinstance(value, PLAIN_TYPES), type(value)
    if isinstance(value, list | tuple):
        for item in value:
            _assert_plain(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str)
            _assert_plain(item)
    elif isinstance(value, np.ndarray):
        assert value.dtype.kind in codec.ARRAY_KINDS


# --- structure: the grader-side modules cannot build code -----------------------------------------

FORBIDDEN_CALLS = {"exec", "eval", "compile", "__import__", "import_module", "getattr", "globals", "locals",
                   "vars", "setattr"}


@pytest.mark.parametrize("module", ["execution/codec.py", "execution/bridge.py", "execution/kernel.py"])
def test_grader_side_decoding_modules_call_nothing_that_builds_or_finds_code(module: str) -> None:
    tree = ast.parse((PACKAGE / module).read_text(encoding="utf-8"))
    calls = {node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
             for node in ast.walk(tree) if isinstance(node, ast.Call)}
    assert not calls & FORBIDDEN_CALLS, f"{module} calls {calls & FORBIDDEN_CALLS}"
    imports = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)
               for alias in node.names}
    assert not imports & {"pickle", "importlib", "marshal", "dill", "cloudpickle"}


def test_the_code_that_rebuilds_functions_exists_only_as_text_for_the_kernel() -> None:
    assert "rebuild_function" in agent.AGENT_TEMPLATE
    assert not hasattr(agent, "rebuild_function") and not hasattr(codec, "rebuild_function")
    grader_side = [p for p in PACKAGE.rglob("*.py") if p.name != "agent.py"]
    assert not [p for p in grader_side if "__function__" in p.read_text(encoding="utf-8")
                and p.name not in ("outbound.py",)]


# --- hostile payloads ---------------------------------------------------------------------------------

def _hostile_payloads(canary: Path) -> dict[str, Any]:
    function = _function_payload(canary)
    return {
        "function": function,
        "function_in_list": {"__list__": [1, function]},
        "function_in_dict": {"__dict__": {"a": function}},
        "function_in_tuple": {"__tuple__": [function]},
        "unknown_tag": {"__module__": "os"},
        "class_tag": {"__class__": {"module": "os", "name": "system", "args": ["touch /tmp/x"]}},
        "two_keys": {"__list__": [], "__dict__": {}},
        "bare_list": [1, 2, 3],
        "list_tag_not_list": {"__list__": "abc"},
        "dict_tag_not_dict": {"__dict__": [1]},
        "pickle_array": {"__ndarray__": _npy(np.array([object()], dtype=object), allow_pickle=True)},
        "string_array": {"__ndarray__": _npy(np.array(["a", "b"]))},
        "record_array": {"__ndarray__": _npy(np.zeros(2, dtype=[("a", "i4"), ("b", "f8")]))},
        "void_dtype": {"__ndarray__": _npy(np.zeros(2, dtype="V8"))},
        "datetime_dtype": {"__ndarray__": _npy(np.zeros(2, dtype="M8[s]"))},
        "not_base64": {"__ndarray__": "!!!not base64!!!"},
        "not_npy": {"__ndarray__": base64.b64encode(b"hello world, not an npy file").decode()},
        "array_not_text": {"__ndarray__": {"__function__": function}},
        "huge_shape": {"__ndarray__": _huge_shape_npy()},
        "deep": _deep(codec.MAX_DEPTH + 5),
        "many_items": {"__list__": [0] * (codec.MAX_ITEMS + 1)},
    }


def _huge_shape_npy() -> str:
    """A header claiming 10**12 float64 values, followed by 8 bytes."""
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000,), }"
    header += " " * (63 - len(header) % 64) + "\n"
    raw = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + b"\0" * 8
    return base64.b64encode(raw).decode()


def _deep(levels: int) -> Any:
    value: Any = 0
    for _ in range(levels):
        value = {"__list__": [value]}
    return value


@pytest.mark.parametrize("case", sorted(_hostile_payloads(Path("/nonexistent")).keys()))
def test_hostile_payload_is_refused_and_runs_nothing(case: str, tmp_path: Path) -> None:
    canary = tmp_path / "canary" / "ran"
    payload = _hostile_payloads(canary)[case]
    with pytest.raises(ValueError):
        codec.decode(payload)
    with pytest.raises(ValueError):
        codec.decode(codec.parse(json.dumps(payload)))
    assert not canary.exists()


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"a":' * 50_000 + "0" + "}" * 50_000])
def test_deep_json_is_a_value_error_not_a_recursion_error(text: str) -> None:
    with pytest.raises(ValueError):
        codec.decode(codec.parse(text))


def test_oversized_and_overcounted_text_is_refused_before_parsing() -> None:
    with pytest.raises(ValueError, match="MB"):
        codec.parse('"' + "a" * (codec.MAX_TEXT_BYTES + 1) + '"')
    with pytest.raises(ValueError, match="values"):
        codec.parse("[" + "0," * (2 * codec.MAX_ITEMS) + "0]")
    with pytest.raises(ValueError):
        codec.parse(b"bytes are not text")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        codec.parse("1" * 5000)  # Python refuses ints of more than 4300 digits: still a ValueError


def test_huge_array_header_allocates_nothing() -> None:
    import tracemalloc

    tracemalloc.start()
    with pytest.raises(ValueError, match="header"):
        codec.decode({"__ndarray__": _huge_shape_npy()})
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 10 * 1024 * 1024


def test_kernel_side_encoder_refuses_what_is_not_plain_data() -> None:
    class Rigged:
        def __eq__(self, other: object) -> bool:
            return True

    def generator() -> Any:
        yield 1

    for value in (lambda: 1, np, Rigged(), generator(), b"bytes", {1: 2}, np.array([Rigged()], dtype=object),
                  np.array(["text"]), _nested_list(codec.MAX_DEPTH + 2), [0] * (codec.MAX_ITEMS + 1)):
        with pytest.raises(codec.NotPlainData):
            codec.encode(value)


def _nested_list(levels: int) -> Any:
    value: Any = 0
    for _ in range(levels):
        value = [value]
    return value


def test_plain_data_round_trips() -> None:
    import torch

    values = [None, True, 3, -2.5, float("inf"), "text \u00fc", [1, [2, (3, 4)]], {"a": {"b": [1.5]}},
              np.arange(12, dtype=np.int16).reshape(3, 4), np.asfortranarray(np.ones((2, 3))), np.float32(1.25),
              np.zeros((0, 5)), np.array([1 + 2j]), np.array([True, False])]
    for value in values:
        back = codec.decode(json.loads(json.dumps(codec.encode(value), allow_nan=True)))
        if isinstance(value, np.ndarray):
            assert back.dtype == value.dtype and np.array_equal(back, value)
        else:
            assert back == value
    tensor = codec.decode(codec.encode(torch.arange(4.0)), tensors=torch.from_numpy)
    assert torch.equal(tensor, torch.arange(4.0))


def test_outbound_functions_are_refused_by_the_grader_side_decoder() -> None:
    def helper(x: float) -> float:
        return 2 * x

    request = encode_request([helper, 1.0])
    assert "__function__" in json.dumps(request)
    with pytest.raises(ValueError):
        codec.decode(request)


# --- properties: arbitrary JSON in, plain data or ValueError out ---------------------------------------

TAGS = ["__ndarray__", "__tensor__", "__list__", "__tuple__", "__dict__", "__function__", "__class__",
        "__reduce__", "name", "source", "modules", "captured"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.sampled_from(TAGS) | st.text(max_size=8), children, max_size=3),
    max_leaves=40,
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_arbitrary_json_decodes_to_plain_data_or_value_error(data: Any) -> None:
    try:
        value = codec.decode(codec.parse(json.dumps(data)))
    except ValueError:
        return
    _assert_plain(value)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["__ndarray__", "__tensor__"]), st.binary(max_size=300))
def test_arbitrary_array_bytes_decode_to_number_arrays_or_value_error(tag: str, raw: bytes) -> None:
    # Start from a real .npy header half the time so the fuzzing reaches the data checks.
    prefix = base64.b64decode(_npy(np.zeros(3)))[:10] if raw[:1] == b"\0" else b""
    try:
        value = codec.decode({tag: base64.b64encode(prefix + raw).decode()})
    except ValueError:
        return
    _assert_plain(value)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(set(_hostile_payloads(Path("/nonexistent"))) - {"many_items"})), json_values)
def test_hostile_payloads_nested_in_arbitrary_json_never_run(case: str, wrapper: Any) -> None:
    canary = Path("/tmp/autograder-codec-canary/ran")
    payload = {"__list__": [_hostile_payloads(canary)[case], wrapper]}
    try:
        value = codec.decode(codec.parse(json.dumps(payload)))
    except ValueError:
        value = None
    _assert_plain(value)
    assert not canary.exists()
