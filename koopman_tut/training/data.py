"""Datasets: scikit-learn's bundled ``digits`` (offline default), MNIST and CIFAR-10 (torchvision).

Normalizations and augmentation follow ShrinkBench (Blalock et al. 2020), the framework Redman et al. (ICLR 2022)
used: MNIST mean 0.1307, std 0.3081; CIFAR-10 mean (0.491, 0.482, 0.447), std (0.247, 0.243, 0.262), random crop 32
with padding 4 and horizontal flips for training.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import re
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler, TensorDataset

from ..recording.recorder_checks import _check_bool, _check_int
from ..recording.validation import check_real, check_seed
from .data_checks import DatasetFormatError, cifar_batch, cifar_meta, mnist_tensors, parsed, read_idx
from .download import DEADLINE, fetch

SAMPLE_SHAPE = {"digits": (1, 8, 8), "mnist": (1, 28, 28), "cifar10": (3, 32, 32)}  # one image (unflattened)
DATASETS = tuple(SAMPLE_SHAPE)
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
CIFAR10_MEAN, CIFAR10_STD = (0.491, 0.482, 0.447), (0.247, 0.243, 0.262)


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Where datasets live: ``root``, else $KOOPMAN_TUT_DATA, else ``data/`` beside the package."""
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a folder (a str or os.PathLike), got {root!r} ({type(root).__name__})")
    if root is not None:
        return Path(root)
    env = os.environ.get("KOOPMAN_TUT_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "data"


def digits(seed: int = 0, test_fraction: float = 0.25, image: bool = False) -> tuple[TensorDataset, TensorDataset]:
    """scikit-learn's 8x8 handwritten digits (1797 images, shipped offline), standardized.

    Stratified split, deterministic in ``seed``; each pixel standardized by the training set's mean and std (+1e-6),
    but one constant over the training set (a border pixel) is only centred, so a test image's ink there stays O(1).

    Returns
    -------
    (train, test) TensorDatasets of (x, y): x (N, 64) float32, or (N, 1, 8, 8) if ``image``;
    y (N,) int64.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    if not 10 <= check_real("test_fraction", test_fraction, 0) * len(y) <= len(y) - 10:  # each class on each side
        raise ValueError(f"test_fraction must leave 10 images (one per class) on each side of the split, a fraction "
                         f"in [{10 / len(y):.4f}, {1 - 10 / len(y):.4f}] of the {len(y)}, got {test_fraction}")
    state = seed if isinstance(seed, np.random.RandomState) else check_seed("seed", seed, 32)  # sklearn's random_state
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=test_fraction, random_state=state, stratify=y)
    mean, std = Xtr.mean(0), np.where(Xtr.std(0) > 0, Xtr.std(0) + 1e-6, 1.0)  # 1e-6 would turn a test 1 into 1e6
    out = []
    for Xs, ys in ((Xtr, ytr), (Xte, yte)):
        x = torch.tensor((Xs - mean) / std, dtype=torch.float32)
        out.append(TensorDataset(x.reshape(-1, 1, 8, 8) if image else x, torch.tensor(ys, dtype=torch.long)))
    return out[0], out[1]


def _missing(name: str, where: Path, files: str, cause: Exception | None = None) -> FileNotFoundError:
    msg = (f"{name} is not in {where} (expected {files}). Get it with download=True while online (e.g. "
           f"koopman_tut.training.data.get_datasets('{name.lower().replace('-', '')}', download=True)), or copy the "
           f"files there by hand; set KOOPMAN_TUT_DATA or root= to look elsewhere.")
    if cause is not None:
        msg += f" ({type(cause).__name__}: {cause})"
    gz = sorted(p.name for p in where.glob("*.gz")) if where.is_dir() else []
    return FileNotFoundError(msg + (f". {where} holds {', '.join(gz)}: gunzip them there" if gz else ""))


def _mnist_class():
    from torchvision import datasets
    from torchvision.datasets.mnist import read_image_file, read_label_file

    class MNIST(datasets.MNIST):
        """torchvision's MNIST and parsers, but a file that fails to parse is named and what was read
        is checked (:mod:`.data_checks`): only a missing file is a RuntimeError ("Dataset not found")."""

        def _load_legacy_data(self):
            path = Path(self.processed_folder) / (self.training_file if self.train else self.test_file)
            load = super()._load_legacy_data
            loaded = parsed(lambda _: load(), path)
            images, labels = loaded if isinstance(loaded, (tuple, list)) and len(loaded) == 2 else (loaded, None)
            return mnist_tensors(images, labels, path, path)

        def _load_data(self):
            raw, prefix = Path(self.raw_folder), "train" if self.train else "t10k"
            images, labels = raw / f"{prefix}-images-idx3-ubyte", raw / f"{prefix}-labels-idx1-ubyte"
            read = read_idx(read_image_file, images, 3), read_idx(read_label_file, labels, 1)
            return mnist_tensors(*read, images, labels)

    return MNIST


def mnist(root=None, download: bool = False, flatten: bool = False, timeout: float = 30.0,
          deadline: float = DEADLINE):
    """MNIST via torchvision (files under ``root/MNIST/raw``), normalized as in ShrinkBench.

    Returns (train, test) datasets of (x, y): x (1, 28, 28) float32, or (784,) if ``flatten``.
    Raises FileNotFoundError naming where the files are expected when they are absent and cannot be downloaded (network
    calls time out after ``timeout`` seconds, the whole download after ``deadline``: :mod:`.download`), ValueError
    naming the file when one is present but cannot be read, or does not hold N uint8 images of 28x28 and N labels in
    0..9 (:mod:`.data_checks`). Nothing is unpickled: torchvision parses the IDX files byte by byte, and reads an old
    ``MNIST/processed/*.pt`` cache with ``torch.load(weights_only=True)``, which refuses anything but tensors.
    """
    from torchvision import transforms

    root = data_root(root)
    tf = [transforms.ToTensor(), transforms.Normalize(MNIST_MEAN, MNIST_STD)]
    if flatten:
        tf.append(transforms.Lambda(lambda x: x.reshape(-1)))
    tf = transforms.Compose(tf)
    cls = _mnist_class()
    load = lambda: tuple(cls(str(root), train=t, transform=tf) for t in (True, False))  # noqa: E731
    try:
        try:
            train, test = load()
        except RuntimeError:  # torchvision's "Dataset not found"
            if not download:
                raise
            fetch(f"from torchvision.datasets import MNIST\nfor t in (True, False):\n    MNIST({str(root)!r}, train=t, "
                  f"download=True)", "MNIST", timeout, deadline)
            train, test = load()
    except DatasetFormatError as e:  # present, but damaged or foreign: downloading again does not replace it
        raise DatasetFormatError(f"MNIST files under {root / 'MNIST'} could not be read ({e}); "
                                 f"delete them and download again (download=True)") from e
    except (RuntimeError, OSError) as e:  # torchvision's "Dataset not found", or the download failed
        raise _missing("MNIST", root / "MNIST" / "raw", "train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                       "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte", e) from e
    return train, test


class ChecksumError(ValueError):
    """A dataset file's MD5 is not the expected one: the file was not read (nothing unpickled)."""


def cifar10_checksums() -> dict[str, str]:
    """{file name: MD5} of CIFAR-10's python batches as published (torchvision's table)."""
    from torchvision.datasets import CIFAR10

    return {**dict(CIFAR10.train_list + CIFAR10.test_list), CIFAR10.meta["filename"]: CIFAR10.meta["md5"]}


def _check_table(checksums) -> dict[str, str]:
    published = cifar10_checksums()
    if checksums is None:
        return published
    if not isinstance(checksums, dict) or set(checksums) != set(published) or not all(
            isinstance(v, str) and re.fullmatch(r"[0-9a-f]{32}", v) for v in checksums.values()):
        raise ValueError(f"checksums must map each of {sorted(published)} to a 32-digit lowercase hex MD5, "
                         f"got {checksums!r}")
    return dict(checksums)


def read_verified(path: Path, md5: str) -> bytes:
    """The bytes of ``path``, read once and returned only if their MD5 is ``md5`` (what is checked
    is what is used). FileNotFoundError if absent, :class:`ChecksumError` if different."""
    data = path.read_bytes()
    got = hashlib.md5(data, usedforsecurity=False).hexdigest()
    if got != md5:
        raise ChecksumError(f"{path} has MD5 {got}, expected {md5}: the file is damaged or is not the "
                            f"dataset's, so it was not read (nothing was unpickled). Delete {path.parent} and "
                            f"get the files again with download=True")
    return data


def _unpickle_verified(path: Path, md5: str) -> dict:
    """A CIFAR python batch, unpickled only after its MD5 matched (Python 2 pickles: latin1); a verified file that
    is not a pickle (made by hand) is a DatasetFormatError naming it."""
    return parsed(lambda _, data=read_verified(path, md5): pickle.loads(data, encoding="latin1"), path)


def _cifar_class():
    from torchvision import datasets

    class CIFAR10(datasets.CIFAR10):
        """torchvision's CIFAR10, but every file is read once and unpickled only after its MD5 is
        checked on the bytes read (torchvision checks the files, then opens them again), and what
        it holds is checked (:mod:`.data_checks`) before it is used."""

        def __init__(self, root, train: bool, transform, md5s: dict[str, str]):
            super(datasets.CIFAR10, self).__init__(root, transform=transform)
            self.train = train
            folder = Path(root) / self.base_folder
            names = [n for n, _ in (self.train_list if train else self.test_list)]
            batches = [cifar_batch(_unpickle_verified(folder / n, md5s[n]), folder / n) for n in names]
            self.data = np.vstack([d for d, _ in batches]).reshape(-1, 3, 32, 32).transpose((0, 2, 3, 1))
            self.targets = [y for _, labels in batches for y in labels]
            meta = folder / self.meta["filename"]
            self.classes = cifar_meta(_unpickle_verified(meta, md5s[meta.name]), meta, self.meta["key"])
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    return CIFAR10


def cifar10(root=None, download: bool = False, augment: bool = True, timeout: float = 30.0,
            checksums: dict[str, str] | None = None, deadline: float = DEADLINE):
    """CIFAR-10 via torchvision (python batches under ``root/cifar-10-batches-py``).

    Training set: random crop 32 (padding 4) and horizontal flip when ``augment``; both
    normalized with ShrinkBench's mean and std. Returns (train, test) with x (3, 32, 32).

    The batches are pickles, and unpickling runs whatever a crafted file asks for: every file
    is read once and unpickled only if the MD5 of those bytes is the published one
    (:func:`cifar10_checksums`), else :class:`ChecksumError` (a ValueError) names the file.
    ``checksums`` ({file name: MD5} for every file) replaces the published table, for files you
    made and vouch for yourself (the tests' tiny fakes); it does not turn the check off.
    ``download=True`` fetches the archive when a file is missing or different (checked
    against its published MD5 by torchvision; network calls time out after ``timeout`` seconds, the whole
    download after ``deadline``: :mod:`.download`). A verified batch that does not hold N uint8
    images of 3072 values and N labels in 0..9 raises :class:`.data_checks.DatasetFormatError`
    (a ValueError) naming the file.
    """
    from torchvision import transforms

    root, md5s = data_root(root), _check_table(checksums)
    folder = root / "cifar-10-batches-py"
    norm = [transforms.ToTensor(), transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD)]
    aug = [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()] if augment else []
    cls = _cifar_class()
    try:
        if download and not all(_matches(folder / n, m) for n, m in md5s.items()):
            fetch(f"from torchvision.datasets.utils import download_and_extract_archive\n"
                  f"download_and_extract_archive({cls.url!r}, {str(root)!r}, filename={cls.filename!r}, "
                  f"md5={cls.tgz_md5!r})", "CIFAR-10", timeout, deadline)
        train = cls(str(root), True, transforms.Compose(aug + norm), md5s)
        test = cls(str(root), False, transforms.Compose(norm), md5s)
    except (ChecksumError, DatasetFormatError):  # named the file already
        raise
    except (RuntimeError, OSError) as e:
        raise _missing("CIFAR-10", folder, "data_batch_1..5, test_batch, batches.meta", e) from e
    except Exception as e:  # a verified file that is still not a CIFAR batch (made by hand)
        raise ValueError(f"CIFAR-10 files under {folder} could not be read: {type(e).__name__}: {e}") from e
    return train, test


def _matches(path: Path, md5: str) -> bool:
    try:
        read_verified(path, md5)
    except (OSError, ChecksumError):
        return False
    return True


def get_datasets(name: str = "digits", seed: int = 0, root=None, download: bool = False,
                 flatten: bool | None = None, deadline: float = DEADLINE) -> tuple[Dataset, Dataset]:
    """(train, test) datasets by name: 'digits' (offline), 'mnist' or 'cifar10'.

    ``flatten`` defaults to True for digits (an MLP's input, (64,)) and False for MNIST
    ((1, 28, 28) for MnistNet); set it to get the other layout. ``deadline``: seconds a download
    may take in all (see :func:`mnist`).
    """
    if name == "digits":
        return digits(seed=seed, image=flatten is False)
    if name == "mnist":
        return mnist(root=root, download=download, flatten=bool(flatten), deadline=deadline)
    if name == "cifar10":
        return cifar10(root=root, download=download, deadline=deadline)
    raise ValueError(f"dataset must be one of {DATASETS}, got {name!r}")


def loader(dataset: Dataset, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None
           ) -> DataLoader:
    """A DataLoader over ``dataset``; the batch order depends only on ``generator``.

    A TensorDataset is indexed one whole batch at a time (one gather per tensor, not ``batch_size`` look-ups
    and a collate): the batches of ``DataLoader(dataset, batch_size, shuffle=shuffle, generator=generator)``
    in the same order, at a quarter of the cost per batch (a fifth of a digits MLP's step)."""
    batch_size, shuffle = _check_int("batch_size", batch_size, 1), _check_bool("shuffle", shuffle)  # numpy's too
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
    _check_int("batch_size", batch_size, 1)
    g = torch.Generator().manual_seed(check_seed("seed", seed))
    bs = len(train) if full_batch else batch_size
    return (loader(train, bs, shuffle=not full_batch, generator=g),
            loader(test, test_batch_size, shuffle=False))
