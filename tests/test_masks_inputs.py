"""Pruning inputs: what the score, mask and gradient functions accept, and what they refuse by name.

Each test pins one finding of a review: scores that leave out a layer, scores passed as masks,
random masks on a pruned model, gradients in train mode without side effects, ranking precision,
the whole seed, unchecked flags and counts, errors that name the argument, and the classifier rule.
"""
import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from koopman_tut import pruning as P


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 30), nn.ReLU(), nn.Linear(30, 10))


class HeadFirst(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(64, 10)  # registered first, applied last
        self.body = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU())

    def forward(self, x):
        return self.head(self.body(x))


def test_the_classifier_can_be_named_and_an_unsure_guess_warns():
    net = HeadFirst()
    with pytest.warns(UserWarning, match="'body.2', the last nn.Linear registered.*classifier="):
        assert P.classifier_names(net) == ["body.2.weight", "body.2.bias"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert P.classifier_names(net, "head") == ["head.weight", "head.bias"]
        assert P.prunable(net, classifier="head") == ["body.0.weight", "body.2.weight"]
        assert P.prunable(net, classifier=None) == P.prunable(net, classifier=True) == [
            "head.weight", "body.0.weight", "body.2.weight"]
        P.classifier_names(mlp())  # nn.Sequential: registration order is the forward order, no warning
    with pytest.raises(ValueError, match="classifier='nope': the model has no module of that name"):
        P.prunable(net, classifier="nope")
    with pytest.raises(ValueError, match="classifier='body.1' holds no conv/linear weight"):
        P.prunable(net, classifier="body.1")
    with pytest.raises(TypeError, match="classifier must be a module name"):
        P.classifier_names(net, 3)


def test_a_model_without_linear_layers_warns_that_no_classifier_is_kept():
    class AllConv(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.out = nn.Conv2d(3, 8, 3), nn.Conv2d(8, 10, 1)

        def forward(self, x):
            return self.out(torch.relu(self.c1(x))).mean((2, 3))

    net = AllConv()
    with pytest.warns(UserWarning, match="no .classifier and no nn.Linear"):
        assert P.prunable(net) == ["c1.weight", "out.weight"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert P.prunable(net, classifier="out") == ["c1.weight"]
        assert P.prunable(net, classifier=None) == ["c1.weight", "out.weight"]
