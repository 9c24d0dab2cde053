"""Datasets: digits offline; MNIST and CIFAR-10 from tiny files written in the real on-disk formats."""
import pickle

import pytest
import torch
from fakedata import write_cifar10, write_mnist

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
    write_cifar10(tmp_path)
    train, test = data.get_datasets("cifar10", root=tmp_path)
    assert len(train) == 20 and len(test) == 4
    x, y = train[0]
    assert x.shape == (3, 32, 32) and 0 <= y < 10
    # training augmentation is random, the test transform is not
    assert torch.equal(test[1][0], test[1][0])
    plain, _ = data.cifar10(root=tmp_path, augment=False)
    raw = torch.tensor(pickle.load(open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "rb"))["data"][0])
    expect = (raw.reshape(3, 32, 32).float() / 255 - torch.tensor(data.CIFAR10_MEAN)[:, None, None]) \
        / torch.tensor(data.CIFAR10_STD)[:, None, None]
    assert torch.allclose(plain[0][0], expect, atol=1e-5)


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
