"""Activations exporters write out of smaller ops are recognised by what they compute."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from worker.diagnosis.facts import ACTIVATION, LayerRole
from worker.engine.formats import load_network


class Swish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


class TanhGelu(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.gelu(x, approximate="tanh")


def _roles(tmp_path, activation: nn.Module, dynamo: bool = False) -> dict[str, LayerRole]:
    torch.manual_seed(0)
    network = nn.Sequential(nn.Linear(8, 8), activation, nn.Linear(8, 2)).eval()
    path = tmp_path / "n.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(network, (torch.randn(2, 8),), str(path), dynamo=dynamo, opset_version=18)
    loaded = load_network(path, external_data_dir=tmp_path)
    kinds = {node.name: node.op_type for node in loaded.nodes}
    return {kinds[name]: role for name, role in loaded.layer_roles.items()}


@pytest.mark.parametrize("activation", [nn.SiLU(), Swish()], ids=["SiLU", "x*sigmoid(x)"])
def test_sigmoid_times_its_input_is_silu_not_a_sigmoid(tmp_path, activation):
    roles = _roles(tmp_path, activation)
    assert roles.get("Sigmoid") == LayerRole(ACTIVATION, "silu")


def test_the_tanh_form_of_gelu_is_gelu_not_a_tanh(tmp_path):
    assert _roles(tmp_path, TanhGelu()).get("Tanh") == LayerRole(ACTIVATION, "gelu")


def test_a_plain_sigmoid_stays_a_sigmoid(tmp_path):
    assert "Sigmoid" not in _roles(tmp_path, nn.Sigmoid())
