"""Datasets: scikit-learn's bundled ``digits`` (offline default), MNIST and CIFAR-10 (torchvision).

Normalizations and augmentation follow ShrinkBench (Blalock et al. 2020), the framework
Redman et al. (ICLR 2022) used: MNIST mean 0.1307, std 0.3081; CIFAR-10 mean
(0.491, 0.482, 0.447), std (0.247, 0.243, 0.262), random crop 32 with padding 4 and
horizontal flips for training.
"""
from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from pathlib import Path

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler, TensorDataset

DATASETS = ("digits", "mnist", "cifar10")
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
CIFAR10_MEAN, CIFAR10_STD = (0.491, 0.482, 0.447), (0.247, 0.243, 0.262)


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Where datasets live: ``root``, else $KOOPMAN_TUT_DATA, else ``data/`` beside the package."""
    if root is not None:
        return Path(root)
    env = os.environ.get("KOOPMAN_TUT_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "data"


def digits(seed: int = 0, test_fraction: float = 0.25, image: bool = False) -> tuple[TensorDataset, TensorDataset]:
    """scikit-learn's 8x8 handwritten digits (1797 images, shipped offline), standardized.

    The split is stratified and deterministic in ``seed``; features are standardized with
    the training set's per-pixel mean and std.

    Returns
    -------
    (train, test) TensorDatasets of (x, y): x (N, 64) float32, or (N, 1, 8, 8) if ``image``;
    y (N,) int64.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=test_fraction, random_state=seed, stratify=y)
    mean, std = Xtr.mean(0), Xtr.std(0) + 1e-6  # some border pixels are constant
    out = []
    for Xs, ys in ((Xtr, ytr), (Xte, yte)):
        x = torch.tensor((Xs - mean) / std, dtype=torch.float32)
        out.append(TensorDataset(x.reshape(-1, 1, 8, 8) if image else x, torch.tensor(ys, dtype=torch.long)))
    return out[0], out[1]


@contextmanager
def _socket_timeout(seconds: float):
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def _missing(name: str, where: Path, files: str, cause: Exception | None = None) -> FileNotFoundError:
    msg = (f"{name} is not in {where} (expected {files}). Get it with download=True while online "
           f"(e.g. koopman_tut.data.get_datasets('{name.lower().replace('-', '')}', download=True)), or copy the "
           f"files there by hand; set KOOPMAN_TUT_DATA or root= to look elsewhere.")
    if cause is not None:
        msg += f" ({type(cause).__name__}: {cause})"
    return FileNotFoundError(msg)


def mnist(root=None, download: bool = False, flatten: bool = False, timeout: float = 30.0):
    """MNIST via torchvision (files under ``root/MNIST/raw``), normalized as in ShrinkBench.

    Returns (train, test) datasets of (x, y): x (1, 28, 28) float32, or (784,) if ``flatten``.
    Raises FileNotFoundError naming where the files are expected when they are absent and
    cannot be downloaded (network calls time out after ``timeout`` seconds).
    """
    from torchvision import datasets, transforms

    root = data_root(root)
    tf = [transforms.ToTensor(), transforms.Normalize(MNIST_MEAN, MNIST_STD)]
    if flatten:
        tf.append(transforms.Lambda(lambda x: x.reshape(-1)))
    tf = transforms.Compose(tf)
    try:
        with _socket_timeout(timeout):
            train = datasets.MNIST(str(root), train=True, download=download, transform=tf)
            test = datasets.MNIST(str(root), train=False, download=download, transform=tf)
    except (RuntimeError, OSError) as e:
        raise _missing("MNIST", root / "MNIST" / "raw",
                       "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
                       "t10k-labels-idx1-ubyte", e) from e
    return train, test


def _cifar_class():
    from torchvision import datasets

    base = datasets.CIFAR10

    class CIFAR10(base):
        """torchvision's CIFAR10 that accepts batches copied by hand: it checks that the files
        are there, not their MD5 sums (a damaged batch fails when it is read)."""

        train_list = [[name, None] for name, _ in base.train_list]
        test_list = [[name, None] for name, _ in base.test_list]
        meta = {**base.meta, "md5": None}

    return CIFAR10


def cifar10(root=None, download: bool = False, augment: bool = True, timeout: float = 30.0):
    """CIFAR-10 via torchvision (python batches under ``root/cifar-10-batches-py``).

    Training set: random crop 32 (padding 4) and horizontal flip when ``augment``; both
    normalized with ShrinkBench's mean and std. Returns (train, test) with x (3, 32, 32).
    """
    from torchvision import transforms

    root = data_root(root)
    norm = [transforms.ToTensor(), transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD)]
    aug = [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()] if augment else []
    cls = _cifar_class()
    try:
        with _socket_timeout(timeout):
            if download:
                cls(str(root), train=True, download=True)
            train = cls(str(root), train=True, download=False, transform=transforms.Compose(aug + norm))
            test = cls(str(root), train=False, download=False, transform=transforms.Compose(norm))
    except (RuntimeError, OSError) as e:
        raise _missing("CIFAR-10", root / "cifar-10-batches-py",
                       "data_batch_1..5, test_batch, batches.meta", e) from e
    except Exception as e:  # unpickling a damaged batch
        raise ValueError(f"CIFAR-10 files under {root / 'cifar-10-batches-py'} could not be read: {e}") from e
    return train, test


def get_datasets(name: str = "digits", seed: int = 0, root=None, download: bool = False,
                 flatten: bool | None = None) -> tuple[Dataset, Dataset]:
    """(train, test) datasets by name: 'digits' (offline), 'mnist' or 'cifar10'.

    ``flatten`` defaults to True for digits (an MLP's input, (64,)) and False for MNIST
    ((1, 28, 28) for MnistNet); set it to get the other layout.
    """
    if name == "digits":
        return digits(seed=seed, image=flatten is False)
    if name == "mnist":
        return mnist(root=root, download=download, flatten=bool(flatten))
    if name == "cifar10":
        return cifar10(root=root, download=download)
    raise ValueError(f"dataset must be one of {DATASETS}, got {name!r}")


def loader(dataset: Dataset, batch_size: int, shuffle: bool = False,
           generator: torch.Generator | None = None) -> DataLoader:
    """A DataLoader over ``dataset``; the batch order depends only on ``generator``.

    A TensorDataset is indexed one whole batch at a time (one gather per tensor instead of
    ``batch_size`` item look-ups and a collate): the same batches in the same order as
    ``DataLoader(dataset, batch_size, shuffle=shuffle, generator=generator)``, at about a
    quarter of the cost per batch, which is a fifth of a digits MLP's training step.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not isinstance(dataset, TensorDataset):
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator)
    order = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
    # the loader draws its base seed from the same generator, as DataLoader(shuffle=True) does
    return DataLoader(dataset, batch_size=None, sampler=BatchSampler(order, batch_size, drop_last=False),
                      generator=generator)


def batch_size_of(data: DataLoader) -> int:
    """The batch size of a loader made by :func:`loader` or by DataLoader itself."""
    return data.batch_size if data.batch_size is not None else data.sampler.batch_size


def loaders(train: Dataset, test: Dataset, batch_size: int = 128, seed: int = 0,
            test_batch_size: int = 1000, full_batch: bool = False) -> tuple[DataLoader, DataLoader]:
    """Seeded (train, test) loaders: the training order depends only on ``seed``.

    ``full_batch=True`` gives one batch holding the whole training set (gradient descent).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    g = torch.Generator().manual_seed(seed)
    bs = len(train) if full_batch else batch_size
    return (loader(train, bs, shuffle=not full_batch, generator=g),
            loader(test, test_batch_size, shuffle=False))
