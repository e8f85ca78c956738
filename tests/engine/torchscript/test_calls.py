"""worker.engine.torchscript.calls: a module called several times has a row per call, in the order they run,
each with its own output statistics and the module's parameters, which the network's total counts once."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from gradaudit.options import AuditOptions
from suites.networks import AlbertLike
from worker.engine.audit import audit_network
from worker.engine.taps import base_path, call_name
from worker.engine.torchscript.load import load_torchscript
from worker.engine.torchscript.tapping import Tapping
from worker.engine.torchscript.taps import layer_taps

_BLOCK = ["encoder.shared.up", "encoder.shared.act", "encoder.shared.down", "encoder.shared.norm"]


def traced(network: nn.Module, example: torch.Tensor, path) -> None:
    """network traced and saved at path."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(network.eval(), example), str(path))


class TwiceRelu(nn.Module):
    """One ReLU module called before and after a residual add, as torchvision's BasicBlock calls it."""

    def __init__(self):
        super().__init__()
        self.first, self.relu, self.second, self.head = nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.relu(x + self.second(self.relu(self.first(x)))))


@pytest.fixture(scope="module")
def albert(tmp_path_factory):
    """AlbertLike with its block called 4 times, traced and saved."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("albert") / "albert.pt"
    traced(AlbertLike(calls=4), torch.randint(0, 100, (2, 8)), path)
    return path


def test_call_names_round_trip():
    assert call_name("encoder.shared", 1) == "encoder.shared"
    assert call_name("encoder.shared", 3) == "encoder.shared#3"
    assert base_path("encoder.shared#3") == ("encoder.shared", 3) and base_path("head") == ("head", 1)


def test_each_call_of_a_shared_block_is_a_row_in_the_order_the_calls_run(albert):
    taps = layer_taps(load_torchscript(albert))
    calls = [call_name(name, k) for k in range(1, 5) for name in _BLOCK]
    assert [layer.name for layer in taps.layers] == ["embedding", "norm", *calls, "head"]
    assert [layer.depth for layer in taps.layers] == list(range(len(taps.layers)))
    assert taps.tapped == len(taps.layers)


def test_each_call_lists_the_parameters_of_its_module(albert):
    layers = {layer.name: layer for layer in layer_taps(load_torchscript(albert)).layers}
    assert layers["encoder.shared.up#3"].parameter_names == layers["encoder.shared.up"].parameter_names
    assert layers["encoder.shared.act#2"].parameter_names == []


def test_each_call_is_observed_with_its_own_output(albert):
    module = torch.jit.load(str(albert)).eval()
    paths = [call_name("encoder.shared.norm", k) for k in range(1, 5)]
    seen = {}
    ids = torch.randint(0, 100, (3, 8))
    Tapping(module).forward(paths)(lambda tap, tensor: seen.__setitem__(tap, tensor.detach().clone()), ids)
    with torch.no_grad():
        torch.manual_seed(0)
        network = AlbertLike(calls=4).eval()
        hidden = network.norm(network.embedding(ids))
        for k in range(4):
            hidden = network.encoder.shared(hidden)
            assert torch.allclose(seen[k], hidden, atol=1e-6)


def test_calls_have_their_own_statistics_and_the_parameters_count_once(albert):
    result = audit_network(albert, options=AuditOptions(input_shapes={"ids": [4, 8]}), device="cpu")
    rows = {layer.name: layer for layer in result.layers}
    first, third = rows["encoder.shared.up"], rows["encoder.shared.up#3"]
    assert first.parameters == third.parameters > 0 and first.grad_norm == third.grad_norm  # one gradient
    assert first.batch_rows[0]["output_grad_norm"] != third.batch_rows[0]["output_grad_norm"]
    assert first.batch_rows[0]["activation_std"] != third.batch_rows[0]["activation_std"]
    torch.manual_seed(0)
    assert result.network["parameters"] == sum(p.numel() for p in AlbertLike(calls=4).parameters())


def test_a_module_called_twice_in_one_block_has_both_calls_in_place(tmp_path):
    torch.manual_seed(0)
    traced(TwiceRelu(), torch.randn(2, 8), tmp_path / "twice.pt")
    names = [layer.name for layer in layer_taps(load_torchscript(tmp_path / "twice.pt")).layers]
    assert names == ["first", "relu", "second", "relu#2", "head"]
