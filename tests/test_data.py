"""Datasets: digits offline; MNIST and CIFAR-10 from tiny files written in the real on-disk formats."""
import hashlib
import math
import pickle

import numpy as np
import pytest
import torch
from fakedata import MakesMarker, crafted_batch, write_cifar10, write_mnist

from koopman_tut import data


def test_digits_split_is_deterministic_standardized_and_stratified():
    a_tr, a_te = data.digits(seed=3)
    b_tr, _ = data.digits(seed=3)
    c_tr, _ = data.digits(seed=4)
    assert len(a_tr) + len(a_te) == 1797
    assert torch.equal(a_tr.tensors[0], b_tr.tensors[0])
    assert not torch.equal(a_tr.tensors[0], c_tr.tensors[0])
    x = a_tr.tensors[0]
    assert x.shape == (len(a_tr), 64) and x.dtype == torch.float32
    assert float(x.mean(0).abs().max()) < 1e-5
    assert set(a_te.tensors[1].tolist()) == set(range(10))
    img, _ = data.get_datasets("digits", flatten=False)
    assert img.tensors[0].shape[1:] == (1, 8, 8)


@pytest.mark.parametrize("seed", [0, 2])  # splits with a pixel 0 on every training image but not on some test image
def test_digits_pixel_constant_in_training_is_centred_not_divided_by_a_tiny_std(seed):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    Xtr, Xte, _, _ = train_test_split(X, y, test_size=0.25, random_state=seed, stratify=y)
    constant = Xtr.std(0) == 0
    assert constant.sum() and (Xte[:, constant] != Xtr[0, constant]).any()  # the case this test is about
    mean, std = Xtr.mean(0), Xtr.std(0)
    train, test = data.digits(seed=seed)
    for got, raw in ((train.tensors[0], Xtr), (test.tensors[0], Xte)):
        want = (raw - mean) / np.where(constant, 1.0, std + 1e-6)  # scale 1 where constant, as StandardScaler
        assert torch.equal(got, torch.tensor(want, dtype=torch.float32))
    assert float(test.tensors[0].abs().max()) < 100  # not 1e6: the constant pixel's 1 stays 1


def test_mnist_from_idx_files(tmp_path):
    labels = write_mnist(tmp_path)
    train, test = data.get_datasets("mnist", root=tmp_path)
    assert len(train) == 12 and len(test) == 6
    x, y = test[5]
    assert x.shape == (1, 28, 28) and y == labels[5]
    assert x.min() >= (0 - 0.1307) / 0.3081 - 1e-5 and x.max() <= (1 - 0.1307) / 0.3081 + 1e-5
    flat, _ = data.mnist(root=tmp_path, flatten=True)
    assert flat[0][0].shape == (784,)


def test_cifar10_from_python_batches(tmp_path):
    md5s = write_cifar10(tmp_path)  # the fakes' own MD5s, passed explicitly: the check still runs
    train, test = data.cifar10(root=tmp_path, checksums=md5s)
    assert len(train) == 20 and len(test) == 4
    x, y = train[0]
    assert x.shape == (3, 32, 32) and 0 <= y < 10
    # training augmentation is random, the test transform is not
    assert torch.equal(test[1][0], test[1][0])
    plain, _ = data.cifar10(root=tmp_path, augment=False, checksums=md5s)
    raw = torch.tensor(pickle.load(open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "rb"))["data"][0])
    expect = (raw.reshape(3, 32, 32).float() / 255 - torch.tensor(data.CIFAR10_MEAN)[:, None, None]) \
        / torch.tensor(data.CIFAR10_STD)[:, None, None]
    assert torch.allclose(plain[0][0], expect, atol=1e-5)


def test_sample_shape_is_each_datasets_image(tmp_path):
    """data.SAMPLE_SHAPE (what the CLI checks a MODEL against) is the shape of each dataset's images."""
    md5s = write_cifar10(tmp_path)
    write_mnist(tmp_path)
    images = {"digits": data.get_datasets("digits", flatten=False)[0], "mnist": data.mnist(root=tmp_path)[0],
              "cifar10": data.cifar10(root=tmp_path, checksums=md5s)[0]}
    assert set(images) == set(data.DATASETS) == set(data.SAMPLE_SHAPE)
    assert all(tuple(images[name][0][0].shape) == data.SAMPLE_SHAPE[name] for name in images)


def test_cifar10_refuses_files_that_are_not_the_published_ones(tmp_path):
    """By default only the published MD5s are accepted: tiny fakes are refused before any unpickling."""
    write_cifar10(tmp_path)
    with pytest.raises(data.ChecksumError, match="data_batch_1 has MD5 [0-9a-f]{32}, expected c99cafc1") as e:
        data.get_datasets("cifar10", root=tmp_path)
    assert isinstance(e.value, ValueError) and "nothing was unpickled" in str(e.value)
    assert data.cifar10_checksums()["batches.meta"] == "5ff9c542aee3614f3951f8cda6e48888"


def _rewrite_batch(tmp_path, md5s, name, change) -> dict:
    """Batch ``name`` of the fakes rewritten as ``change(batch)`` (a dict) returns; the table with its new MD5."""
    import hashlib

    path = tmp_path / "cifar-10-batches-py" / name
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="latin1")
    blob = pickle.dumps(change(batch), protocol=2)
    path.write_bytes(blob)
    return {**md5s, name: hashlib.md5(blob).hexdigest()}


@pytest.mark.parametrize("name, change, expected", [
    ("data_batch_2", lambda b: {**b, "labels": b["labels"] + [1, 2]}, "expected 4 labels .* got 6 labels"),
    ("data_batch_2", lambda b: {**b, "labels": b["labels"][:3]}, "expected 4 labels .* got 3 labels"),
    ("test_batch", lambda b: {k: v for k, v in b.items() if k != "labels"}, "expected a dict with 'data' and 'labels'"),
    ("data_batch_1", lambda b: {**b, "data": b["data"].reshape(2, 6144)}, r"uint8 array of shape \(N, 3072\)"),
    ("data_batch_1", lambda b: {**b, "data": b["data"].astype("float64")}, "uint8 array .* got a float64"),
    ("data_batch_3", lambda b: {**b, "labels": [0, 1, 10, 2]}, r"integers in 0\.\.9, got \[10\]"),
    ("data_batch_3", lambda b: {**b, "labels": [0, 1, 2.0, 2]}, r"integers in 0\.\.9, got \[2\.0\]"),
    ("data_batch_4", lambda b: ["not", "a", "dict"], "not a CIFAR-10 batch.* got a list"),
    ("batches.meta", lambda b: {**b, "label_names": ["a"] * 9}, "'label_names' is a list of 10 class names"),
    ("batches.meta", lambda b: {"names": b["label_names"]}, "'label_names' is a list of 10 class names"),
])
def test_cifar10_batch_contents_are_checked(tmp_path, name, change, expected):
    """A batch that verifies (the caller vouched for it) but whose labels do not match its images one
    to one, whose images are not uint8 rows of 3072, or whose class names are not 10 strings, is
    refused with a ValueError naming the file, instead of mislabelling images or failing mid-epoch."""
    md5s = _rewrite_batch(tmp_path, write_cifar10(tmp_path), name, change)
    with pytest.raises(ValueError, match=expected) as e:
        data.cifar10(root=tmp_path, checksums=md5s)
    assert str(tmp_path / "cifar-10-batches-py" / name) in str(e.value)


@pytest.mark.parametrize("victim", ["data_batch_1", "data_batch_5", "test_batch", "batches.meta"])
@pytest.mark.parametrize("seam", [False, True])
def test_a_crafted_pickle_is_never_unpickled(tmp_path, victim, seam):
    """A batch replaced by a pickle that runs code when loaded is refused, and its code never runs:
    by the published table (get_datasets, the CLI's route) and by a checksums= table made for
    the honest files (the test seam does not let a swapped file through)."""
    md5s = write_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    (tmp_path / "cifar-10-batches-py" / victim).write_bytes(crafted_batch(marker))
    first_wrong = victim if seam else "data_batch_1"  # the published table refuses the honest fakes too
    with pytest.raises(data.ChecksumError, match=f"{first_wrong} has MD5"):
        if seam:
            data.cifar10(root=tmp_path, checksums=md5s)
        else:
            data.get_datasets("cifar10", root=tmp_path)
    assert not marker.exists()
    # control: the same bytes do run their code when unpickled, so the check above could fail
    pickle.loads(crafted_batch(tmp_path / "control"), encoding="latin1")
    assert (tmp_path / "control").exists()


@pytest.mark.parametrize("bad", [None, {"data_batch_1": "0" * 32},
                                 lambda m: {**m, "test_batch": "XYZ"}, lambda m: {**m, "test_batch": None}])
def test_checksums_must_cover_every_file_with_an_md5(tmp_path, bad):
    md5s = write_cifar10(tmp_path)
    table = bad(md5s) if callable(bad) else bad
    if table is None:  # the published table: refused as above, never skipped
        with pytest.raises(data.ChecksumError):
            data.cifar10(root=tmp_path, checksums=None)
        return
    with pytest.raises(ValueError, match="checksums must map each of"):
        data.cifar10(root=tmp_path, checksums=table)


def test_cifar10_download_only_when_a_file_is_missing_or_different(tmp_path, monkeypatch):
    """download=True fetches the archive (with its published MD5) only when a file does not verify."""
    import shutil

    md5s = write_cifar10(tmp_path / "staged")
    calls = []

    def fake_fetch(code, what, timeout, deadline):  # the child process's download, done here
        calls.append((code, what, timeout, deadline))
        shutil.copytree(tmp_path / "staged" / "cifar-10-batches-py", tmp_path / "root" / "cifar-10-batches-py",
                        dirs_exist_ok=True)

    monkeypatch.setattr(data, "fetch", fake_fetch)
    train, _ = data.cifar10(root=tmp_path / "root", download=True, checksums=md5s, timeout=7, deadline=99)
    assert len(train) == 20 and len(calls) == 1 and calls[0][1:] == ("CIFAR-10", 7, 99)
    code = calls[0][0]
    assert "download_and_extract_archive(" in code and repr(data._cifar_class().url) in code
    assert "filename='cifar-10-python.tar.gz'" in code and "md5='c58f30108f718f92721af3b95e74349a'" in code
    data.cifar10(root=tmp_path / "root", download=True, checksums=md5s)
    assert len(calls) == 1  # every file verified: nothing fetched


def test_mnist_download_runs_in_a_bounded_child_only_when_files_are_missing(tmp_path, monkeypatch):
    import shutil

    calls = []

    def fake_fetch(code, what, timeout, deadline):
        calls.append((code, what, timeout, deadline))
        write_mnist(tmp_path)

    monkeypatch.setattr(data, "fetch", fake_fetch)
    train, test = data.mnist(root=tmp_path, download=True, timeout=5, deadline=60)
    assert len(calls) == 1 and calls[0][1:] == ("MNIST", 5, 60) and "MNIST(" in calls[0][0] and len(train) > 0
    data.mnist(root=tmp_path, download=True)
    assert len(calls) == 1  # present: nothing fetched
    shutil.rmtree(tmp_path / "MNIST")
    data.get_datasets("mnist", root=tmp_path, download=True, deadline=42)  # the route the CLI takes
    assert len(calls) == 2 and calls[1][3] == 42


def test_a_download_is_bounded_as_a_whole():
    """Each socket call is bounded by timeout, the whole download by deadline (a trickling server kept
    torchvision's download going for ever): the child runs with the socket timeout and is stopped at the deadline."""
    import time

    from koopman_tut.training.download import fetch

    t0 = time.perf_counter()
    with pytest.raises(TimeoutError, match=r"downloading X took over 1 s and was stopped"):
        fetch("import time\ntime.sleep(60)", "X", timeout=5, deadline=1)
    assert time.perf_counter() - t0 < 30
    with pytest.raises(OSError, match=r"downloading Y failed: AssertionError: 7.0"):
        fetch("import socket\nassert socket.getdefaulttimeout() == 9, socket.getdefaulttimeout() - 1", "Y", 8)
    fetch("import socket\nassert socket.getdefaulttimeout() == 8", "Z", 8)
    for bad in (None, math.inf, 0, -1, True, "30"):
        with pytest.raises(ValueError, match="must be a finite number of seconds > 0"):
            fetch("pass", "W", bad)
        with pytest.raises(ValueError, match="deadline must be a finite number of seconds > 0"):
            fetch("pass", "W", 1, bad)


def test_mnist_never_unpickles_a_crafted_cache(tmp_path):
    """MNIST's IDX files are parsed byte by byte; an old processed/*.pt cache is read with
    torch.load(weights_only=True): a crafted one is refused with a ValueError and runs nothing."""
    marker = tmp_path / "pwned"
    processed = tmp_path / "MNIST" / "processed"
    processed.mkdir(parents=True)
    for name in ("training.pt", "test.pt"):
        torch.save({"x": MakesMarker(marker)}, processed / name)
    with pytest.raises(ValueError, match="MNIST files under .* could not be read"):
        data.get_datasets("mnist", root=tmp_path)
    assert not marker.exists()


def test_mnist_damaged_idx_file_is_a_value_error(tmp_path):
    write_mnist(tmp_path)
    images = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(b"\0\0\0\0" + images.read_bytes()[4:])  # magic number gone
    with pytest.raises(ValueError, match="MNIST files under .* could not be read"):
        data.get_datasets("mnist", root=tmp_path)


def _idx(magic: int, array) -> bytes:
    """An IDX file: big-endian magic, the sizes, then the uint8 values."""
    import numpy as np

    array = np.asarray(array, dtype=np.uint8)
    return np.array([magic, *array.shape], ">i4").tobytes() + array.tobytes()


@pytest.mark.parametrize("download", [False, True])
@pytest.mark.parametrize("damage", ["truncated", "extra bytes"])
def test_mnist_present_but_unreadable_is_not_missing(tmp_path, download, damage):
    """A present but damaged file is a ValueError naming it (download=True cannot help: torchvision
    sees the files and downloads nothing); FileNotFoundError only when a file is absent."""
    write_mnist(tmp_path)
    images = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    raw = images.read_bytes()
    images.write_bytes(raw[:-100] if damage == "truncated" else raw + b"\0" * 3)
    with pytest.raises(ValueError, match="could not be read.*delete them and download again") as e:
        data.mnist(root=tmp_path, download=download, timeout=0.01)
    assert not isinstance(e.value, FileNotFoundError) and str(images) in str(e.value)
    images.unlink()
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte"):
        data.mnist(root=tmp_path)


@pytest.mark.parametrize("images, labels, named, expected", [
    (10, range(7), "labels", "holds 7 labels for the 10 images"),
    (10, [i % 10 for i in range(13)], "labels", "holds 13 labels for the 10 images"),
    (10, [1] * 9 + [200], "labels", r"labels must be in 0\.\.9, got values from 1 to 200"),
    ((10, 10, 10), range(10), "images", r"images of shape \(N, 28, 28\), got .* \(10, 10, 10\)"),
])
def test_mnist_labels_and_images_are_checked(tmp_path, images, labels, named, expected):
    """Files that parse but do not hold one label in 0..9 per 28x28 image are refused before use,
    naming the file, instead of loading and failing mid-epoch (or training on wrong labels)."""
    import numpy as np

    write_mnist(tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    shape = (images, 28, 28) if isinstance(images, int) else images
    (raw / "train-images-idx3-ubyte").write_bytes(_idx(2051, np.zeros(shape)))
    (raw / "train-labels-idx1-ubyte").write_bytes(_idx(2049, list(labels)))
    with pytest.raises(ValueError, match=expected) as e:
        data.get_datasets("mnist", root=tmp_path)
    assert str(raw / f"train-{named}-idx") in str(e.value)


def test_mnist_old_cache_is_checked_too(tmp_path):
    """An old processed/*.pt cache (read instead of the raw files) gets the same checks."""
    processed = tmp_path / "MNIST" / "processed"
    processed.mkdir(parents=True)
    torch.save((torch.zeros(4, 28, 28, dtype=torch.uint8), torch.arange(4)), processed / "training.pt")
    torch.save((torch.zeros(4, 28, 28, dtype=torch.uint8), torch.arange(3)), processed / "test.pt")
    with pytest.raises(ValueError, match="test.pt holds 3 labels for the 4 images"):
        data.mnist(root=tmp_path)
    torch.save((torch.zeros(4, 28, 28, dtype=torch.uint8), torch.arange(4)), processed / "test.pt")
    train, test = data.mnist(root=tmp_path)
    assert len(train) == len(test) == 4 and test[3][1] == 3


@pytest.mark.parametrize("name, where", [("mnist", "MNIST"), ("cifar10", "cifar-10-batches-py")])
def test_missing_files_say_where_and_how(tmp_path, name, where):
    with pytest.raises(FileNotFoundError, match=where) as e:
        data.get_datasets(name, root=tmp_path)
    assert "download=True" in str(e.value)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="dataset must be one of"):
        data.get_datasets("imagenet")


def test_loaders_are_seeded():
    tr, te = data.digits()
    a = next(iter(data.loaders(tr, te, batch_size=32, seed=1)[0]))[1]
    b = next(iter(data.loaders(tr, te, batch_size=32, seed=1)[0]))[1]
    c = next(iter(data.loaders(tr, te, batch_size=32, seed=2)[0]))[1]
    assert torch.equal(a, b) and not torch.equal(a, c)
    full = data.loaders(tr, te, full_batch=True)[0]
    assert len(full) == 1


@pytest.mark.parametrize("shuffle, batch_size", [(True, 128), (True, 100), (False, 1000), (False, 1347)])
def test_batched_loader_gives_dataloaders_batches(shuffle, batch_size):
    """loader() indexes a TensorDataset a batch at a time: same batches, same order, epoch after
    epoch, as DataLoader itself, and the generator is left in the same state."""
    from torch.utils.data import DataLoader

    tr, _ = data.digits()
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    ref = DataLoader(tr, batch_size=batch_size, shuffle=shuffle, generator=g1 if shuffle else None)
    fast = data.loader(tr, batch_size, shuffle=shuffle, generator=g2 if shuffle else None)
    assert len(fast) == len(ref) and data.batch_size_of(fast) == data.batch_size_of(ref) == batch_size
    for _ in range(3):
        batches = list(fast)
        expected = list(ref)
        assert len(batches) == len(expected)
        for (x, y), (xr, yr) in zip(batches, expected):
            assert torch.equal(x, xr) and torch.equal(y, yr)
    assert torch.equal(g1.get_state(), g2.get_state())
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        data.loader(tr, 0)


@pytest.mark.parametrize("fraction", [0.999, 0.001])
def test_digits_names_a_test_fraction_that_leaves_a_class_out_of_a_split(fraction):
    """scikit-learn said 'The train_size = 1 should be greater or equal to the number of classes = 10'."""
    with pytest.raises(ValueError, match="test_fraction must leave 10 images"):
        data.digits(test_fraction=fraction)
    assert len(data.digits(test_fraction=0.994)[0]) >= 10 and len(data.digits(test_fraction=0.006)[1]) >= 10


def test_a_root_that_is_not_a_folder_name_is_named():
    with pytest.raises(TypeError, match="root must be a folder"):
        data.mnist(root=3)


@pytest.mark.parametrize("damage, expected", [
    (lambda b: b"\0\0\x09\x99" + b[4:], r"train-images-idx3-ubyte starts with magic number 0x00000999: expected an "
                                        r"IDX file of uint8 images \(magic number 0x00000803\)"),
    (lambda b: _idx(2049, list(range(10))), r"train-images-idx3-ubyte starts with magic number 0x00000801 \(that of "
                                            r"labels: are the files swapped\?\)"),
    (lambda b: __import__("gzip").compress(b), "train-images-idx3-ubyte is gzip-compressed: gunzip it"),
    (lambda b: b[:6], "train-images-idx3-ubyte is cut short: 6 bytes, fewer than the 16 of the header"),
])
def test_an_mnist_file_with_a_wrong_header_says_what_it_holds(tmp_path, damage, expected):
    """Before, torchvision's parser raised ``AssertionError: `` (no text) for a wrong magic number, a label file in
    the images' place or a gzip file under the plain name, and ``invalid literal for int() with base 16: b''`` for a
    cut header: the file was named, the problem was not."""
    write_mnist(tmp_path)
    images = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(damage(images.read_bytes()))
    with pytest.raises(ValueError, match=expected):
        data.mnist(root=tmp_path)


def test_mnist_files_left_gzipped_are_named_with_what_to_do(tmp_path):
    import gzip

    write_mnist(tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    for f in list(raw.iterdir()):
        (raw / (f.name + ".gz")).write_bytes(gzip.compress(f.read_bytes()))
        f.unlink()
    with pytest.raises(FileNotFoundError, match=r"holds t10k-images-idx3-ubyte.gz, .*: gunzip them there"):
        data.mnist(root=tmp_path)


@pytest.mark.parametrize("content", [b"", b"not a pickle", None])
def test_a_cifar_batch_that_verifies_but_is_not_a_pickle_is_named(tmp_path, content):
    """A file the caller vouched for (checksums=) that does not unpickle: before, the error named only the folder."""
    md5s = write_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_4"
    batch.write_bytes(batch.read_bytes()[:-50] if content is None else content)  # None: a truncated pickle
    md5s["data_batch_4"] = hashlib.md5(batch.read_bytes()).hexdigest()
    with pytest.raises(ValueError, match=rf"{batch}: (UnpicklingError|EOFError)"):
        data.cifar10(root=tmp_path, checksums=md5s)
