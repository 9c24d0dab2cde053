"""Models of the tutorial and of the paper's experiments.

* ``DigitsMLP``: a small MLP for the 8x8 digits (the offline default).
* ``LeNet300100``: LeNet-300-100 (LeCun et al. 1998), 266,610 parameters.
* ``MnistNet``: ShrinkBench's MNIST network used by Redman et al. (ICLR 2022), 431,080 parameters.
* ``resnet20``: ResNet-20 for CIFAR-10 (He et al. 2016) with option-A (zero-padding)
  shortcuts, 269,722 parameters; convolutions have no bias.

Every model names its last layer ``classifier`` so pruning can leave it out.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..recording.recorder_checks import _check_int
from ..recording.validation import check_seed, plain_int


def _sizes(**sizes) -> list:
    """Layer sizes as ints >= 1, in the order given (``hidden`` an ordered sequence of them: tuple, list,
    range, 1-D array, a generator read once; 0-d integer tensors as nn.Linear takes them), or an error
    naming the argument."""
    out = []
    for name, value in sizes.items():
        if name != "hidden":
            out.append(_check_int(name, plain_int(value), 1))
        elif isinstance(value, (str, bytes, dict, set, frozenset)) or not hasattr(value, "__iter__") \
                or getattr(value, "ndim", 1) != 1:
            raise TypeError(f"hidden must be an ordered sequence of layer widths (integers >= 1), got {value!r}")
        else:
            out.append(tuple(_check_int(f"hidden[{i}]", plain_int(w), 1) for i, w in enumerate(value)))
    return out


class DigitsMLP(nn.Module):
    """64 -> 256 -> 256 -> 128 -> 10 with ReLU (116,618 parameters). x: (B, 64) -> logits (B, 10).

    Over-parameterized on purpose: pruning needs redundancy, and compression 32 must be
    reachable with the classifier and biases left unpruned.
    """

    def __init__(self, in_features: int = 64, hidden: tuple[int, ...] = (256, 256, 128), n_classes: int = 10):
        super().__init__()
        in_features, hidden, n_classes = _sizes(in_features=in_features, hidden=hidden, n_classes=n_classes)
        sizes = (in_features, *hidden)
        self.features = nn.Sequential(*[m for a, b in zip(sizes[:-1], sizes[1:]) for m in (nn.Linear(a, b), nn.ReLU())])
        self.classifier = nn.Linear(sizes[-1], n_classes)

    def forward(self, x):
        return self.classifier(self.features(x.flatten(1)))


class LeNet300100(nn.Module):
    """784 -> 300 -> 100 -> 10. x: (B, 1, 28, 28) or (B, 784) -> (B, 10)."""

    def __init__(self, in_features: int = 784, n_classes: int = 10):
        super().__init__()
        in_features, n_classes = _sizes(in_features=in_features, n_classes=n_classes)
        self.fc1, self.fc2 = nn.Linear(in_features, 300), nn.Linear(300, 100)
        self.classifier = nn.Linear(100, n_classes)

    def forward(self, x):
        x = F.relu(self.fc1(x.flatten(1)))
        return self.classifier(F.relu(self.fc2(x)))


class MnistNet(nn.Module):
    """conv(1->20, 5) - ReLU - pool 2 - conv(20->50, 5) - ReLU - pool 2 - fc 800->500 - ReLU - fc 500->10.

    x: (B, 1, 28, 28) -> (B, 10).
    """

    def __init__(self, n_classes: int = 10):
        super().__init__()
        (n_classes,) = _sizes(n_classes=n_classes)
        self.conv1, self.conv2 = nn.Conv2d(1, 20, 5), nn.Conv2d(20, 50, 5)
        self.fc1 = nn.Linear(800, 500)
        self.classifier = nn.Linear(500, n_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # (B, 20, 12, 12)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # (B, 50, 4, 4)
        return self.classifier(F.relu(self.fc1(x.flatten(1))))


class _ShortcutA(nn.Module):
    """Option-A shortcut: subsample by 2 and zero-pad the new channels (no parameters)."""

    def __init__(self, pad: int):
        super().__init__()
        self.pad = pad

    def forward(self, x):
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = _ShortcutA((c_out - c_in) // 2) if stride != 1 or c_in != c_out else nn.Identity()

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNetCifar(nn.Module):
    """ResNet-(6n+2) for 32x32 images: 16-32-64 channels, n blocks per stage. x: (B, 3, 32, 32)."""

    def __init__(self, n: int = 3, n_classes: int = 10):
        super().__init__()
        n, n_classes = _sizes(n=n, n_classes=n_classes)
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, c = [], 16
        for c_out, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(n):
                layers.append(BasicBlock(c, c_out, stride if i == 0 else 1))
                c = c_out
        self.layers = nn.Sequential(*layers)
        self.classifier = nn.Linear(64, n_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x):
        x = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.classifier(F.adaptive_avg_pool2d(x, 1).flatten(1))


def resnet20(n_classes: int = 10) -> ResNetCifar:
    """ResNet-20 (3 blocks per stage), option-A shortcuts: 269,722 parameters."""
    return ResNetCifar(3, n_classes)


MODELS = {"mlp": DigitsMLP, "lenet300100": LeNet300100, "mnistnet": MnistNet, "resnet20": resnet20}
DEFAULT_MODEL = {"digits": "mlp", "mnist": "mnistnet", "cifar10": "resnet20"}
INPUT_SHAPE = {"mlp": (64,), "lenet300100": (784,), "mnistnet": (1, 28, 28), "resnet20": (3, 32, 32)}  # one sample


def accepts(name: str, sample_shape: tuple[int, ...]) -> bool:
    """Whether model ``name``, with its default sizes, takes samples of ``sample_shape``.

    A fully connected model (a 1-D :data:`INPUT_SHAPE`) flattens each sample, so only the
    number of values must match; a convolutional one needs the shape itself.
    """
    if name not in INPUT_SHAPE:
        raise ValueError(f"model must be one of {sorted(INPUT_SHAPE)}, got {name!r}")
    want = INPUT_SHAPE[name]
    return math.prod(sample_shape) == want[0] if len(want) == 1 else tuple(sample_shape) == want


def get_model(name: str, seed: int | None = None, **kwargs) -> nn.Module:
    """Build a model by name ('mlp', 'lenet300100', 'mnistnet', 'resnet20'); seeded init if ``seed``."""
    if name not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, got {name!r}")
    if seed is not None:
        torch.manual_seed(check_seed("seed", seed))
    return MODELS[name](**kwargs)


def n_parameters(model: nn.Module) -> int:
    """Total number of parameters (pruned entries included)."""
    return sum(p.numel() for p in model.parameters())
