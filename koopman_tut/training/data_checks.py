"""What a dataset file holds once read, checked before it is used: image counts, shapes and
dtypes, one label per image, labels 0..9, class names.

torchvision reads the files (MNIST's IDX files, CIFAR-10's python batches) but trusts what
they say: a label file shorter than its image file fails only mid-epoch, a longer one (or a
CIFAR batch with extra labels) gives every later image another image's label. Each check
raises :class:`DatasetFormatError` (a ValueError) naming the file and what was expected.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

N_CLASSES = 10  # MNIST and CIFAR-10
CIFAR_ROW = 3 * 32 * 32  # one CIFAR-10 image a row: 1024 red, 1024 green, 1024 blue values
MNIST_IMAGE = (28, 28)
IDX_MAGIC = {3: 0x0803, 1: 0x0801}  # IDX: 0, 0, the type (0x08: uint8), the dimensions; MNIST's images and labels


class DatasetFormatError(ValueError):
    """A dataset file was read, but it does not hold what its format says."""


def parsed(reader, path: Path):
    """``reader(str(path))``; any failure (a damaged or foreign file) is a DatasetFormatError naming ``path``."""
    try:
        return reader(str(path))
    except Exception as e:  # noqa: BLE001 - whatever a damaged file makes the parser raise
        raise DatasetFormatError(f"{path}: {type(e).__name__}: {e}") from e


def read_idx(reader, path: Path, dims: int):
    """``parsed(reader, path)`` once the IDX header says uint8 data of ``dims`` dimensions (3: images, 1: labels);
    else a DatasetFormatError that says what the file is (torchvision's parser would say ``AssertionError: `` for a
    wrong magic number or a gzip file, ``invalid literal for int()`` for a cut header)."""
    with open(path, "rb") as f:
        head = f.read(4 + 4 * dims)
    kind = {3: "images", 1: "labels"}
    what = f"an IDX file of uint8 {kind[dims]} (magic number 0x{IDX_MAGIC[dims]:08x})"
    if head[:2] == b"\x1f\x8b":
        raise DatasetFormatError(f"{path} is gzip-compressed: gunzip it ({what} is expected under this name)")
    if len(head) < 4 + 4 * dims:
        raise DatasetFormatError(f"{path} is cut short: {len(head)} bytes, fewer than the {4 + 4 * dims} of the "
                                 f"header of {what}")
    magic = int.from_bytes(head[:4], "big")
    if magic != IDX_MAGIC[dims]:
        held = next((f" (that of {kind[d]}: are the files swapped?)" for d, m in IDX_MAGIC.items() if m == magic), "")
        raise DatasetFormatError(f"{path} starts with magic number 0x{magic:08x}{held}: expected {what}")
    return parsed(reader, path)


def _describe(x) -> str:
    if isinstance(x, (np.ndarray, torch.Tensor)):
        return f"a {x.dtype} {type(x).__name__} of shape {tuple(x.shape)}"
    return f"a {type(x).__name__}"


def _is_label(y) -> bool:
    return isinstance(y, (int, np.integer)) and not isinstance(y, (bool, np.bool_)) and 0 <= y < N_CLASSES


def cifar_batch(entry, path: Path) -> tuple[np.ndarray, list[int]]:
    """The images and labels of one CIFAR-10 python batch, checked.

    Parameters
    ----------
    entry : object
        What the batch unpickled to: a dict with 'data', a uint8 array (N, 3072), and 'labels',
        N integers in 0..9.
    path : Path
        The batch's file, named in errors.

    Returns
    -------
    (ndarray, list of int)
        The (N, 3072) uint8 images and their N labels.
    """
    if not isinstance(entry, dict) or "data" not in entry or "labels" not in entry:
        have = f"keys {sorted(map(str, entry))}" if isinstance(entry, dict) else _describe(entry)
        raise DatasetFormatError(f"{path} is not a CIFAR-10 batch: expected a dict with 'data' and 'labels', "
                                 f"got {have}")
    data, labels = entry["data"], entry["labels"]
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == CIFAR_ROW):
        raise DatasetFormatError(f"{path}: 'data' must be a uint8 array of shape (N, {CIFAR_ROW}) (one 32x32 RGB "
                                 f"image a row), got {_describe(data)}")
    if isinstance(labels, np.ndarray) and labels.ndim == 1:
        labels = labels.tolist()
    if not isinstance(labels, list) or len(labels) != len(data):
        got = f"{len(labels)} labels" if isinstance(labels, list) else _describe(labels)
        raise DatasetFormatError(f"{path}: expected {len(data)} labels (one per image of 'data'), got {got}")
    if bad := [y for y in labels if not _is_label(y)]:
        raise DatasetFormatError(f"{path}: labels must be integers in 0..{N_CLASSES - 1}, got {bad[:5]!r}"
                                 f"{' ...' if len(bad) > 5 else ''}")
    return data, [int(y) for y in labels]


def cifar_meta(entry, path: Path, key: str = "label_names") -> list[str]:
    """The class names of CIFAR-10's meta file ``path`` (``entry[key]``: a list of 10 strings), checked."""
    names = entry.get(key) if isinstance(entry, dict) else None
    if not (isinstance(names, list) and len(names) == N_CLASSES and all(isinstance(n, str) for n in names)):
        if not isinstance(entry, dict) or key not in entry:
            got = f"keys {sorted(map(str, entry))}" if isinstance(entry, dict) else _describe(entry)
        else:
            got = f"{key!r}: " + (repr(names)[:200] if isinstance(names, list) else _describe(names))
        raise DatasetFormatError(f"{path}: expected a dict whose {key!r} is a list of {N_CLASSES} class names "
                                 f"(strings), got {got}")
    return names


def mnist_tensors(images, labels, image_file: Path, label_file: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST images and labels as read from ``image_file`` and ``label_file``, checked.

    Parameters
    ----------
    images, labels : object
        Expected: a uint8 tensor (N, 28, 28) and an integer tensor (N,) with values in 0..9.
    image_file, label_file : Path
        Where they were read from (the same file for an old ``processed/*.pt`` cache), named in errors.

    Returns
    -------
    (Tensor, Tensor)
        ``images`` and ``labels``, unchanged.
    """
    if not (isinstance(images, torch.Tensor) and images.dtype == torch.uint8 and images.ndim == 3
            and tuple(images.shape[1:]) == MNIST_IMAGE):
        raise DatasetFormatError(f"{image_file}: expected uint8 images of shape (N, 28, 28), got {_describe(images)}")
    if not (isinstance(labels, torch.Tensor) and labels.ndim == 1 and not labels.is_floating_point()
            and not labels.is_complex() and labels.dtype != torch.bool):
        raise DatasetFormatError(f"{label_file}: expected labels as an integer tensor of shape (N,), "
                                 f"got {_describe(labels)}")
    if len(labels) != len(images):
        raise DatasetFormatError(f"{label_file} holds {len(labels)} labels for the {len(images)} images of "
                                 f"{image_file}: expected one label per image")
    if len(labels) and not (0 <= int(labels.min()) and int(labels.max()) < N_CLASSES):
        raise DatasetFormatError(f"{label_file}: labels must be in 0..{N_CLASSES - 1}, got values from "
                                 f"{int(labels.min())} to {int(labels.max())}")
    return images, labels
