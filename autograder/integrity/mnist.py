"""MNIST files on the grader's side: reading IDX, writing the stand-in test split, evaluating a model."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import numpy as np

TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"


def read_idx(path: Path) -> np.ndarray:
    data = path.read_bytes()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def write_idx(path: Path, array: np.ndarray) -> None:
    data = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, data.ndim) + struct.pack(f">{data.ndim}I", *data.shape)
    path.write_bytes(header + data.tobytes())


def idx_shape(path: Path) -> tuple[int, ...]:
    """The shape an IDX file declares, from its header alone."""
    with path.open("rb") as handle:
        header = handle.read(4)
        ndim = header[3]
        return struct.unpack(f">{ndim}I", handle.read(4 * ndim))


def write_standin_test(raw: Path, target: Path, secret: str, run: int) -> None:
    """What a grading run shows the notebook as its test split: as many training images as the real
    test split has, with their labels, in the real files' format, chosen by the grader's secret
    and the run. Nothing in it is information about the real test split (which never enters the
    sandbox); a notebook that learns from it changes its weights from one run to the next."""
    images, labels = read_idx(raw / TRAIN_IMAGES), read_idx(raw / TRAIN_LABELS)
    count = idx_shape(raw / TEST_IMAGES)[0]
    key = hashlib.sha256(f"{secret}:standin:{run}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(key[:16], "big"))
    chosen = rng.choice(len(images), size=count, replace=count > len(images))
    target.mkdir(parents=True, exist_ok=True)
    write_idx(target / TEST_IMAGES, images[chosen])
    write_idx(target / TEST_LABELS, labels[chosen])


def normalised(images: np.ndarray, mean: float, std: float) -> np.ndarray:
    """The contract of hw4: (N, 784) float32 = (pixels / 255 - MEAN) / STD."""
    flat = images.reshape(len(images), -1).astype(np.float32) / 255.0
    return ((flat - np.float32(mean)) / np.float32(std)).astype(np.float32)


def accuracy(model: object, images: np.ndarray, labels: np.ndarray, mean: float, std: float,
             batch: int = 2000) -> float:
    import torch

    correct = 0
    inputs = normalised(images, mean, std)
    for start in range(0, len(inputs), batch):
        logits = model(torch.from_numpy(inputs[start:start + batch]))
        predicted = torch.as_tensor(logits).argmax(dim=1).numpy()
        correct += int((predicted == labels[start:start + batch]).sum())
    return correct / len(labels)


def perturbed(images: np.ndarray, seed: int, noise: float = 8.0) -> np.ndarray:
    """The test images with light pixel noise: a model keeps its accuracy, a lookup table does not."""
    rng = np.random.default_rng(seed)
    noisy = images.astype(np.float32) + rng.normal(0.0, noise, size=images.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
