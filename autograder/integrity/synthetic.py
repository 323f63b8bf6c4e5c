"""A small, learnable, MNIST-like data set in the original IDX format, for tests that must not need
the real MNIST files.

Each image is one of ten hand-made "digit" prototypes (polylines and arcs that look roughly like
the digits 0-9), drawn with a random affine distortion (scale, rotation, shear), a random shift, a
random stroke thickness and contrast, and a little noise: an MLP learns it to well over 95 % in a
few seconds, while a linear model (softmax regression) stays clearly lower, as on the real MNIST
(with the defaults: hw4_mnist's reference MLP gets 600/600 test images right, its linear-model
sample 90 %, its honest smaller MLPs 95.8-98.5 %).
Only numpy and the standard library are used, so any test can write it into a temporary folder:

    write_synthetic_mnist(tmp / "MNIST" / "raw")      # then AUTOGRADER_DATA=tmp

The four files have the original names and format (magic number, big-endian sizes, uint8 data):
train-images-idx3-ubyte (n_train, 28, 28), train-labels-idx1-ubyte (n_train,), and the same with
the prefix t10k- for the test split. The same arguments give byte-identical files (the geometry is
computed in float64, so BLAS rounding differences cannot change a pixel in practice).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autograder.integrity.mnist import TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS, write_idx

IMAGE_SIZE = 28
FILE_NAMES = {"train": (TRAIN_IMAGES, TRAIN_LABELS), "test": (TEST_IMAGES, TEST_LABELS)}


def _arc(cx: float, cy: float, rx: float, ry: float, start: float, stop: float, n: int = 24) -> np.ndarray:
    """Points of an elliptic arc; angles in degrees, 0 = right, 90 = down (image coordinates)."""
    t = np.deg2rad(np.linspace(start, stop, n))
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def _line(*points: tuple[float, float]) -> np.ndarray:
    return np.array(points, dtype=float)


# Strokes of each prototype in a unit box: x to the right, y downwards, (0.5, 0.5) the centre.
_PROTOTYPES: list[list[np.ndarray]] = [
    [_arc(0.5, 0.5, 0.28, 0.42, 0, 360, 40)],  # 0
    [_line((0.36, 0.22), (0.52, 0.06), (0.52, 0.94))],  # 1
    [_arc(0.5, 0.3, 0.27, 0.22, 180, 380), _line((0.75, 0.38), (0.2, 0.92), (0.84, 0.92))],  # 2
    [_arc(0.48, 0.29, 0.26, 0.21, 210, 450), _arc(0.48, 0.71, 0.29, 0.23, 270, 510)],  # 3
    [_line((0.66, 0.94), (0.66, 0.06), (0.16, 0.64), (0.86, 0.64))],  # 4
    [_line((0.8, 0.08), (0.32, 0.08), (0.28, 0.45)), _arc(0.48, 0.66, 0.3, 0.26, 230, 500)],  # 5
    [_arc(0.78, 0.62, 0.5, 0.56, 240, 180, 16), _arc(0.5, 0.7, 0.23, 0.22, 0, 360, 32)],  # 6
    [_line((0.18, 0.08), (0.82, 0.08), (0.42, 0.94))],  # 7
    [_arc(0.5, 0.29, 0.19, 0.2, 0, 360, 30), _arc(0.5, 0.71, 0.24, 0.22, 0, 360, 34)],  # 8
    [_arc(0.5, 0.32, 0.22, 0.22, 0, 360, 32), _line((0.72, 0.32), (0.64, 0.94))],  # 9
]


def _densify(stroke: np.ndarray, step: float = 0.035) -> np.ndarray:
    """Points along a polyline, at most `step` apart (so strokes render without gaps)."""
    out = [stroke[:1]]
    for a, b in zip(stroke[:-1], stroke[1:], strict=True):
        n = max(1, int(np.ceil(np.linalg.norm(b - a) / step)))
        out.append(a + (b - a) * (np.arange(1, n + 1) / n)[:, None])
    return np.concatenate(out)


def _prototype_points() -> list[np.ndarray]:
    """Per class, (P, 2) points centred on 0, all classes padded to the same P by repetition."""
    clouds = [np.concatenate([_densify(s) for s in strokes]) - 0.5 for strokes in _PROTOTYPES]
    size = max(len(c) for c in clouds)
    return [np.resize(c, (size, 2)) for c in clouds]


def _render(labels: np.ndarray, rng: np.random.Generator, chunk: int = 200) -> np.ndarray:
    n = len(labels)
    protos = np.stack(_prototype_points())  # (10, P, 2)
    # Random distortion per image: scale (in pixels for the unit box), aspect, rotation, shear, shift.
    scale = rng.uniform(16.5, 21.0, n)
    aspect = rng.uniform(0.8, 1.15, n)
    angle = np.deg2rad(rng.normal(0.0, 8.0, n))
    shear = rng.normal(0.0, 0.12, n)
    shift = rng.uniform(-2.75, 2.75, (n, 2))
    half_width = rng.uniform(0.6, 1.6, n)  # stroke half-thickness
    contrast = rng.uniform(0.7, 1.0, n)
    cos, sin = np.cos(angle), np.sin(angle)
    # x' = scale * R(angle) @ [[1, shear], [0, 1]] @ diag(aspect, 1) @ x, then shifted to the centre
    a11 = scale * aspect * cos
    a12 = scale * (cos * shear - sin)
    a21 = scale * aspect * sin
    a22 = scale * (sin * shear + cos)
    grid = np.arange(IMAGE_SIZE) + 0.5
    gy, gx = np.meshgrid(grid, grid, indexing="ij")
    pixels = np.stack([gx.ravel(), gy.ravel()], axis=1)  # (784, 2)
    images = np.empty((n, IMAGE_SIZE * IMAGE_SIZE))
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        p = protos[labels[lo:hi]]  # (c, P, 2)
        x = a11[lo:hi, None] * p[..., 0] + a12[lo:hi, None] * p[..., 1] + 14.0 + shift[lo:hi, None, 0]
        y = a21[lo:hi, None] * p[..., 0] + a22[lo:hi, None] * p[..., 1] + 14.0 + shift[lo:hi, None, 1]
        pts = np.stack([x, y], axis=-1)  # (c, P, 2)
        # squared distance from every pixel centre to every stroke point: |a|^2 + |b|^2 - 2 a.b
        # (float64, so that BLAS differences between machines cannot change a pixel)
        cross = np.matmul(pts, pixels.T)  # (c, P, 784)
        d2 = (pts**2).sum(-1)[:, :, None] - 2.0 * cross
        d2 = np.maximum(d2.min(axis=1) + (pixels**2).sum(-1)[None, :], 0.0)  # (c, 784)
        ink = np.clip(half_width[lo:hi, None] + 0.5 - np.sqrt(d2), 0.0, 1.0)
        images[lo:hi] = ink * contrast[lo:hi, None]
    # Noise: a faint grain on the ink, and a few random specks on the background.
    images += rng.normal(0.0, 0.06, images.shape) * (images > 0)
    specks = rng.random(images.shape) < 0.01
    images[specks] += rng.uniform(0.2, 0.7, int(specks.sum()))
    return np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8).reshape(n, IMAGE_SIZE, IMAGE_SIZE)


def make_synthetic_mnist(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n images, uint8 (n, 28, 28), and their labels, uint8 (n,), balanced over the 10 classes."""
    labels = rng.permutation(np.arange(n) % 10).astype(np.uint8)
    return _render(labels, rng), labels


# Grading settings for this small set (tests, the demo): it trains in seconds, so the CPU budget and
# the clock limits shrink with it; over_budget's endless loop passes the budget long before the
# clock stops it, even on a loaded machine.
SYNTHETIC_LIMITS = {"timeout": 150, "cell_timeout": 60, "threads": 1}
SYNTHETIC_INTEGRITY = {"budget_cpu_seconds": 15.0, "budget_seconds": 30.0, "evaluation_cpu_seconds": 8}

# The demo's own set and budget (`autograder demo`; the tests keep the defaults). 2500 training images
# cost a sixth less training than 3000; fewer do not keep the demo's verdicts and leaderboard: the two
# small honest MLPs (5 and 10 epochs, no augmentation) fall below 95 % or swap places on nearly every
# seed (seeds that keep them all: 3000 images 4 of 7, 2500 2 of 6, 2250 0 of 8, 2000 1 of 12 and by one
# test image, 1500 0 of 12). Seed 1 is one on which, as with the defaults, every sample keeps its
# verdict and the order stays: reference 100 % > SGD MLP > small MLP > tiny MLP >= 95 % > linear model
# (98.3, 96.8, 95.7, 87.0 %). The CPU budget is twice what the dearest sample that must stay within it
# used in run 1 (conv_front_end, 5.6-5.8 CPU-seconds measured with kernel templates; the reference
# 5.2): over_budget's endless loop costs the grader the budget.
DEMO_MNIST = {"n_train": 2500, "n_test": 600, "seed": 1}
DEMO_INTEGRITY = SYNTHETIC_INTEGRITY | {"budget_cpu_seconds": 12.0}


def write_synthetic_mnist(raw_dir: Path, n_train: int = 3000, n_test: int = 600, seed: int = 0) -> None:
    """Write the four MNIST IDX files of a synthetic, learnable MNIST-like data set into raw_dir
    (created if needed; use <data>/MNIST/raw so that <data> can be passed as AUTOGRADER_DATA)."""
    raw_dir = Path(raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = make_synthetic_mnist(n, rng)
        image_file, label_file = FILE_NAMES[split]
        write_idx(raw_dir / image_file, images)
        write_idx(raw_dir / label_file, labels)
