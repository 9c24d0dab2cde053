"""Tiny MNIST and CIFAR-10 files in the real on-disk formats, for tests (nothing is downloaded)."""
import hashlib
import pickle

import numpy as np


def write_mnist(root, n_train=12, n_test=6, seed=0):
    """MNIST's IDX files (big-endian magic 2051/2049) under root/MNIST/raw, as torchvision reads them."""
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        imgs = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(np.array([2051, n, 28, 28], ">i4").tobytes() + imgs.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(np.array([2049, n], ">i4").tobytes() + labels.tobytes())
    return labels


def write_cifar10(root, per_batch=4, seed=0):
    """CIFAR-10's python batches: protocol-2 pickles of dicts with 'data' (N, 3072) uint8, 'labels',
    read back with encoding='latin1' as the originals (Python 2 pickles) are.

    Returns {file name: MD5} of the files written (they cannot have the published MD5s): what a
    test passes as ``koopman_tut.training.data.cifar10(checksums=...)``.
    """
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 "labels": rng.integers(0, 10, per_batch).tolist(), "batch_label": name,
                 "filenames": [f"{name}_{i}.png" for i in range(per_batch)]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)], "num_vis": 3072}, f, protocol=2)
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.iterdir()}


class MakesMarker:
    """Unpickling this object creates the file ``marker`` (``open(marker, "w")``): a stand-in for a
    crafted pickle that runs code when it is loaded."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def crafted_batch(marker) -> bytes:
    """A pickle shaped like a CIFAR batch whose loading creates ``marker``."""
    return pickle.dumps({"data": MakesMarker(marker), "labels": [0], "label_names": ["x"]}, protocol=2)
