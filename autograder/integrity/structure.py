"""Rules checked on an exported model's weights: not a convolution in disguise, nothing non-finite.

`GraphModel` refuses a Conv2d, but any convolution is also a linear map, so a CNN can be handed in
as its exact dense equivalent: each Linear row is then one output position of the convolution,
zero outside a small window of the input image, and the rows of one channel repeat the same kernel
values, shifted. `convolution_like` looks for both signs; an MLP trained with SGD or Adam (dense
rows spread over the digit, continuous values never repeated) shows neither.

`non_finite` names what is NaN or infinite: weights, MEAN, STD, the reported accuracy (a NaN
reported accuracy compares unequal to everything, so a tolerance check alone would let it pass).

Both take the export's plain data as the kernel sent it (any keys, any values) and never raise on it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np

LINEAR = "torch.nn.modules.linear.Linear"
SHOWN = 80  # characters of a student's name a message repeats (as model_export does)

IMAGE_SIDE = 28  # MNIST: the first layer sees 784 = 28 x 28 pixels (times its channels)
SIDES = (IMAGE_SIDE, IMAGE_SIDE // 2, IMAGE_SIDE // 4)  # grids a layer's input is read as: the image, and
# the image after a stride or pooling of 2 or 4 (a second convolution's input)
MAX_CHANNELS = 64  # input channels tried for a grid (in_features = channels x side x side)
MAX_WINDOW = 11  # the largest kernel still "small": 11 x 11 is 15 % of a 28 x 28 image, and holds any
# 3x3-7x7 kernel, dilated 5x5 ones, and their stride-2 / padded versions; capped at half the grid's side
CONCENTRATION = 0.99  # share of a row's energy (sum of squares) inside its best window for it to be
# "local". It is the tolerance against noise added to hide the zeros: noise of std e over the n pixels
# outside a k x k kernel moves about n e^2 / (k^2 rms^2) of the energy out, so 1e-7 (which defeats any
# exact comparison) moves ~1e-11; measured with torch's default conv init (|kernel values| 0.17 on
# average, at most 0.33), noise of std 1e-3 (~0.6 % of a kernel value) still leaves every row above
# 0.99, 3e-3 does not (a known limit: past that, use the shared-kernel test with a tolerance). An MLP's
# row spreads over the digit: measured on the synthetic MNIST, its best 11 x 11 window holds 0.18-0.53
# of its energy; with L1 (a penalty under Adam or SGD, 1e-3 to 5e-3) at most 3 % of the rows reach
# 0.99, with proximal L1 (exact zeros) at most 13 % of the live rows
LOCAL_ROWS = 0.8  # rows that must be local for the layer to count as a convolution: every row of a real
# convolution is, whatever its stride and padding; far above the 13 % an honest MLP showed
SHARED_ROWS = 0.5  # rows whose nonzero values repeat another row's exactly (a shared kernel)
MIN_NONZERO = 4  # a row with fewer nonzeros proves no sharing (dead units are all zero alike)
MAX_DENSITY = 0.5  # a shared row must also be mostly zeros: identical *dense* rows come from an MLP whose
# units were initialised alike (e.g. zeros), a symmetry training never breaks, not from a kernel
MIN_ROWS = 8  # fewer live (not all-zero) output units say nothing statistically
CHUNK_ROWS = 1024  # rows processed at once: bounds the float64 copies to ~8 MB per 1,000 inputs
MAX_LISTED = 5  # non-finite entries named in one message; more are counted
MAX_VISITED = 10_000  # values looked at inside one nested name (codec caps depth and size already)


def _show(text: object) -> str:
    return str(text)[:SHOWN] if isinstance(text, str) else type(text).__name__


# --- convolution structure -------------------------------------------------------------------------

def convolution_like(state: dict[str, Any], graph: Any) -> str | None:
    """A message when a dense layer's weight matrix has a convolution's structure, else None."""
    if not isinstance(state, dict):
        return None
    for name, weight in _linear_weights(state, graph):
        found = _shared_kernel(name, weight) or _windowed(name, weight)
        if found:
            return found
    return None


def _linear_weights(state: dict[str, Any], graph: Any) -> Iterator[tuple[str, np.ndarray]]:
    """The weight matrices of the graph's Linear layers; every 2-D float array if the graph names none."""
    targets = [node["target"] for node in graph if isinstance(node, dict) and node.get("op") == "call_module"
               and node.get("module") == LINEAR and isinstance(node.get("target"), str)] \
        if isinstance(graph, list) else []
    keys = [f"{target}.weight" for target in dict.fromkeys(targets)] or [k for k in state if isinstance(k, str)]
    for key in keys:
        value = state.get(key)
        if isinstance(value, np.ndarray) and value.ndim == 2 and value.dtype.kind == "f" \
                and value.shape[0] >= MIN_ROWS:
            yield key.removesuffix(".weight"), value


def _shared_kernel(name: str, weight: np.ndarray) -> str | None:
    """Many sparse rows whose sorted nonzero values are identical: one kernel at many positions."""
    signatures: Counter[bytes] = Counter()
    rows = 0
    for row in weight:
        nonzero = row[row != 0]
        if MIN_NONZERO <= len(nonzero) <= MAX_DENSITY * len(row):
            signatures[np.sort(nonzero).tobytes()] += 1
        rows += bool(np.any(row != 0))
    shared = sum(count for count in signatures.values() if count > 1)
    if rows >= MIN_ROWS and shared >= SHARED_ROWS * rows:
        return (f"layer {_show(name)} ({weight.shape[1]} -> {weight.shape[0]}) looks like a convolution written "
                f"as a dense layer: {shared} of its {rows} rows repeat exactly the nonzero weights of another row "
                "(one kernel shared across positions); an MLP's units each learn their own weights")
    return None


def _windowed(name: str, weight: np.ndarray) -> str | None:
    """Most rows keep nearly all their weight inside one small window of the input image (a banded,
    block-Toeplitz matrix), for some reading of the inputs as channels x side x side."""
    for channels, side in _grids(weight.shape[1]):
        largest = min(MAX_WINDOW, side // 2)
        share = _local_share(weight, channels, side, largest)
        if share < LOCAL_ROWS:
            continue
        window = next(k for k in range(1, largest + 1) if k == largest
                      or _local_share(weight, channels, side, k) >= LOCAL_ROWS)
        grid = f"{side}x{side}" + (f" grid of {channels} channels" if channels > 1 else " image")
        return (f"layer {_show(name)} ({weight.shape[1]} -> {weight.shape[0]}) looks like a convolution written "
                f"as a dense layer: {100 * share:.0f} % of its rows keep over {100 * CONCENTRATION:g} % of their "
                f"weight inside a {window}x{window} window of its input read as a {grid}; an MLP's units "
                "spread their weights over the whole image")
    return None


def _grids(features: int) -> Iterator[tuple[int, int]]:
    for side in SIDES:
        channels, rest = divmod(features, side * side)
        if not rest and 1 <= channels <= MAX_CHANNELS:
            yield channels, side


def _local_share(weight: np.ndarray, channels: int, side: int, window: int) -> float:
    """The share of nonzero rows holding CONCENTRATION of their energy in some window x window square."""
    local = rows = 0
    with np.errstate(all="ignore"):  # non-finite weights are non_finite's to report; here they are not local
        for start in range(0, len(weight), CHUNK_ROWS):
            chunk = np.asarray(weight[start:start + CHUNK_ROWS], dtype=np.float64)
            energy = np.square(chunk).reshape(len(chunk), channels, side, side).sum(axis=1)
            total = energy.sum(axis=(1, 2))
            best = _window_sums(energy, window).max(axis=(1, 2))
            alive = np.isfinite(total) & (total > 0)
            rows += int(alive.sum())
            local += int((alive & (best >= CONCENTRATION * total)).sum())
    return local / rows if rows >= MIN_ROWS else 0.0


def _window_sums(energy: np.ndarray, window: int) -> np.ndarray:
    """Sums over every window x window square of each (side x side) map, by an integral image."""
    integral = np.zeros((energy.shape[0], energy.shape[1] + 1, energy.shape[2] + 1))
    integral[:, 1:, 1:] = energy.cumsum(axis=1).cumsum(axis=2)
    k = window
    return integral[:, k:, k:] - integral[:, :-k, k:] - integral[:, k:, :-k] + integral[:, :-k, :-k]


# --- non-finite values -----------------------------------------------------------------------------

def non_finite(state: dict[str, Any], names: dict[str, Any]) -> str | None:
    """A message naming every weight array and notebook value that is NaN or infinite, else None."""
    found: list[str] = []
    for key, value in (state.items() if isinstance(state, dict) else []):
        counts = _bad_counts(value)
        if counts:
            found.append(f"the weights {_show(key)} ({counts})")
    for key, value in (names.items() if isinstance(names, dict) else []):
        bad = _bad_value(value)
        if bad:
            found.append(f"{_show(key)} ({bad})")
    if not found:
        return None
    more = len(found) - MAX_LISTED
    listed = "; ".join(found[:MAX_LISTED]) + (f"; and {more} more" if more > 0 else "")
    return f"not a finite number (NaN or infinite): {listed}"


def _bad_counts(value: Any) -> str:
    """'3 NaN, 1 infinite of 10 values' for a numeric array ('NaN' for one value), '' for a finite one or
    anything else."""
    if not isinstance(value, np.ndarray | np.generic) or np.asarray(value).dtype.kind not in "fc":
        return ""
    array = np.asarray(value)
    nan, infinite = int(np.isnan(array).sum()), int(np.isinf(array).sum())
    if array.size == 1:
        return "NaN" if nan else "infinite" if infinite else ""
    parts = [f"{nan} NaN"] * bool(nan) + [f"{infinite} infinite"] * bool(infinite)
    return ", ".join(parts) + (f" of {array.size} values" if parts else "")


def _bad_value(value: Any) -> str:
    """What is not finite in a value the notebook defined: a number, a numeric string, an array, or
    any of them nested in lists, tuples and dicts."""
    bad: list[str] = []
    for item in _leaves(value):
        counts = _bad_counts(item) if isinstance(item, np.ndarray | np.generic) else _bad_number(item)
        if counts:
            bad.append(counts)
    if not bad:
        return ""
    return bad[0] if len(bad) == 1 else f"{len(bad)} values not finite, the first {bad[0]}"


def _bad_number(item: Any) -> str:
    if isinstance(item, bool) or not isinstance(item, float | str):
        return ""  # ints are exact, and other types are not numbers here
    if isinstance(item, str):
        if len(item) > 64:
            return ""
        try:
            item = float(item)  # what float(MEAN) would make of "nan" or "inf"
        except ValueError:
            return ""
    if math.isnan(item):
        return "NaN"
    return "infinite" if math.isinf(item) else ""


def _leaves(value: Any) -> Iterator[Any]:
    """The non-container values inside `value`, at most MAX_VISITED of them."""
    stack, visited = [value], 0
    while stack and visited < MAX_VISITED:
        item = stack.pop()
        visited += 1
        if isinstance(item, list | tuple):
            stack.extend(reversed(item))
        elif isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
        else:
            yield item
