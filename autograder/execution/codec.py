"""Plain data across the sandbox wall: JSON, with arrays as base64 .npy (never a pickle).

Plain data is None, bools, ints, floats, strings, lists, tuples and string-keyed dicts of them, and
arrays (numpy or torch) of numbers or bools. Nothing else has an encoding, and `decode` can build
nothing else: it has no branch that makes a function, imports a module or calls a name taken from
the payload. That is what makes it safe on what a student's kernel sends.

This module is self-contained on purpose: its source is also sent into the student's kernel, so
both sides encode and decode the same way. (Functions written in a test travel grader -> kernel
only: see outbound.py; the code that rebuilds them exists only inside the kernel.)
"""

import base64
import io
import json

import numpy as np

# Caps on one answer, checked before anything is built from it. The largest honest answer is a
# trained hw4 model: ~0.5 M float32 weights (~3 MB as base64); 64 MB leaves room for an MLP of
# ~12 M parameters while bounding what one answer costs the grader (a few times its size).
MAX_TEXT_BYTES = 64 * 1024 * 1024
MAX_DEPTH = 20  # nesting of lists/dicts; tests pass flat data, models' state dicts are depth 2
MAX_ITEMS = 1_000_000  # scalars, strings and containers in one answer (arrays count once)
ARRAY_KINDS = "biufc"  # bool, int, unsigned, float, complex: no objects, strings or records


class NotPlainData(TypeError):
    pass


class _Budget:
    """Counts what one encode or decode builds, so a huge answer fails before it costs memory."""

    def __init__(self) -> None:
        self.items = 0

    def take(self, count: int = 1) -> None:
        self.items += count
        if self.items > MAX_ITEMS:
            raise NotPlainData(f"more than {MAX_ITEMS} values in one answer")


def _array_b64(array):
    array = np.asarray(array)
    if array.dtype.kind not in ARRAY_KINDS:
        raise NotPlainData(f"an array of dtype {array.dtype} (only numbers and bools cross)")
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def encode(value, depth=0, budget=None):
    """A JSON-able form of `value`, which must be plain data."""
    budget = budget or _Budget()
    budget.take()
    if depth > MAX_DEPTH:
        raise NotPlainData(f"data nested more than {MAX_DEPTH} levels deep")
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, np.ndarray | np.generic):
        return {"__ndarray__": _array_b64(value)}
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        return {"__tensor__": _array_b64(value.detach().cpu().numpy())}
    if isinstance(value, list | tuple):
        kind = "__list__" if isinstance(value, list) else "__tuple__"
        return {kind: [encode(item, depth + 1, budget) for item in value]}
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise NotPlainData("a dict whose keys are not all strings")
        return {"__dict__": {str(k): encode(v, depth + 1, budget) for k, v in value.items()}}
    raise NotPlainData(
        f"a {type(value).__module__}.{type(value).__qualname__}: the grader accepts numbers, strings, "
        "numpy arrays, torch tensors, and lists, tuples and dicts of them"
    )


def _array(text):
    """An array from base64 .npy, its header checked before any memory is taken for the data."""
    if not isinstance(text, str):
        raise ValueError("an array that is not base64 text")
    try:
        raw = base64.b64decode(text, validate=True)
        stream = io.BytesIO(raw)
        version = np.lib.format.read_magic(stream)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
            np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(stream)
    except (ValueError, TypeError, SyntaxError, OverflowError) as error:
        raise ValueError(f"an array that is not .npy data ({str(error)[:100]})") from None
    if dtype.kind not in ARRAY_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise ValueError(f"an array of dtype {str(dtype)[:40]}")
    count = 1
    for size in shape:
        count *= size
    if count * dtype.itemsize != len(raw) - stream.tell():
        raise ValueError("an array whose header does not match its data")
    flat = np.frombuffer(raw, dtype=dtype, count=count, offset=stream.tell()).copy()
    return flat.reshape(shape, order="F" if fortran_order else "C")


def decode(data, tensors=None, depth=0, budget=None):
    """The plain value `encode` made, or ValueError. `tensors` turns arrays that were tensors back
    into tensors (a function of the decoding side's own torch, never one named by the data)."""
    budget = budget or _Budget()
    try:
        budget.take()
    except NotPlainData as error:
        raise ValueError(str(error)) from None
    if depth > MAX_DEPTH:
        raise ValueError(f"data nested more than {MAX_DEPTH} levels deep")
    if data is None or isinstance(data, bool | int | float | str):
        return data
    if not isinstance(data, dict) or len(data) != 1:
        raise ValueError("not data made by encode()")
    (kind, inner), = data.items()
    if kind in ("__ndarray__", "__tensor__"):
        array = _array(inner)
        if array.ndim == 0 and kind == "__ndarray__":
            return array[()]
        return tensors(array) if kind == "__tensor__" and tensors else array
    if kind in ("__list__", "__tuple__") and isinstance(inner, list):
        items = [decode(item, tensors, depth + 1, budget) for item in inner]
        return items if kind == "__list__" else tuple(items)
    if kind == "__dict__" and isinstance(inner, dict):
        return {str(k): decode(v, tensors, depth + 1, budget) for k, v in inner.items()}
    raise ValueError(f"not plain data (tag {str(kind)[:40]!r})")


def parse(text):
    """JSON text from the other side, within the caps, or ValueError."""
    if not isinstance(text, str):
        raise ValueError("an answer that is not text")
    if len(text) > MAX_TEXT_BYTES:
        raise ValueError(f"an answer of more than {MAX_TEXT_BYTES // 1024 // 1024} MB")
    # Each value in JSON costs a comma, a bracket or a brace: count them at C speed before parsing.
    if text.count(",") + text.count("[") + text.count("{") > 2 * MAX_ITEMS:
        raise ValueError(f"more than {MAX_ITEMS} values in one answer")
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError("an answer nested too deeply") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"an answer that is not JSON ({error.msg})") from None
    return value

