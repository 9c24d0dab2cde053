import pytest
import torch

from koopman_tut import models
from koopman_tut.pruning import classifier_names, prunable


@pytest.mark.parametrize("name, count, shape", [
    ("mlp", 116_618, (2, 64)),
    ("lenet300100", 266_610, (2, 1, 28, 28)),
    ("mnistnet", 431_080, (2, 1, 28, 28)),
    ("resnet20", 269_722, (2, 3, 32, 32)),
])
def test_parameter_counts_and_forward(name, count, shape):
    m = models.get_model(name, seed=0)
    assert models.n_parameters(m) == count
    assert m(torch.zeros(shape)).shape == (2, 10)
    assert classifier_names(m) == ["classifier.weight", "classifier.bias"]
    assert "classifier.weight" not in prunable(m)


def test_resnet20_convs_have_no_bias_and_batchnorm_is_not_prunable():
    m = models.resnet20()
    names = prunable(m, bias=True, classifier=True)
    assert not any("bn" in n for n in names)
    assert all(n.endswith("weight") for n in names if "conv" in n)


def test_seeded_init_and_unknown_name():
    a, b = models.get_model("mlp", seed=1), models.get_model("mlp", seed=1)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    with pytest.raises(ValueError, match="model must be one of"):
        models.get_model("vgg")
