"""The two baselines the diagnosis is scored against apply their published rules (suites/baselines.py)."""

from __future__ import annotations

import torch
from torch import nn

from suites import networks as n
from suites.baselines import autotrainer, sagemaker


def test_baselines_apply_their_published_rules():
    torch.manual_seed(0)
    dead = n.mlp(4, 32, "relu", lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"), bias=-6.0)
    assert "dead_relu" in sagemaker(dead, [8, 32]) and "dead_relu" in autotrainer(dead, [8, 32])
    healthy = n.mlp(3, 32, "relu", lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"), bias=0.0)
    assert sagemaker(healthy, [8, 32]) == set() and autotrainer(healthy, [8, 32]) == set()
    saturated = n.mlp(3, 32, "tanh", n.gaussian(400.0))
    assert "saturated_activation" in sagemaker(saturated, [8, 32])
