"""worker.engine.torchscript_taps: the graph rewrite on its own, for traced and scripted networks."""

from __future__ import annotations

import io
import warnings

import pytest
import torch
from torch import nn

from tests.engine.conftest import token_network
from worker.engine.torchscript_taps import Tapping, TapsUnavailable


def reloaded(compiled: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    """The module as the worker sees it: saved and loaded again."""
    buffer = io.BytesIO()
    torch.jit.save(compiled, buffer)
    buffer.seek(0)
    return torch.jit.load(buffer).eval()


def compiled(network: nn.Module, how: str, example: torch.Tensor) -> torch.jit.ScriptModule:
    """network traced or scripted, then saved and reloaded."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return reloaded(torch.jit.trace(network, example) if how == "trace" else torch.jit.script(network))


class Gated(nn.Module):
    """Data-dependent control flow around module calls."""

    def __init__(self):
        super().__init__()
        self.first = nn.Linear(4, 4)
        self.act = nn.Tanh()
        self.last = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.act(self.first(x))
        if bool(hidden.sum() > 0):
            hidden = hidden * 2
        return self.last(hidden)


def nested() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(inplace=True), nn.Sequential(nn.Linear(8, 8), nn.Tanh()),
                         nn.Linear(8, 2)).eval()


@pytest.mark.parametrize("how", ["trace", "script"])
def test_every_module_call_is_located_with_its_path(how):
    tapping = Tapping(compiled(nested(), how, torch.randn(2, 4)))
    assert {"0", "1", "2", "2.0", "2.1", "3"} <= set(tapping.outputs)
    assert tapping.outputs["2"].producer == "2.1"  # a container's output is its last child's


@pytest.mark.parametrize("how", ["trace", "script"])
def test_taps_equal_the_plain_intermediates_and_the_output_is_unchanged(how):
    network = nested()
    module = compiled(network, how, torch.randn(2, 4))
    x = torch.randn(5, 4)
    outputs, (linear, relu, tanh) = Tapping(module).forward(["0", "1", "2.1"])(x)
    with torch.no_grad():
        expected_linear = network[0](x)
    assert torch.allclose(outputs, module(x))
    assert torch.allclose(linear, expected_linear)  # before the in-place ReLU, not after it
    assert torch.allclose(relu, expected_linear.relu())
    assert torch.allclose(tanh, network[2](expected_linear.relu()))


@pytest.mark.parametrize("how", ["trace", "script"])
def test_tapped_tensors_get_their_own_gradient_on_every_call(how):
    module = compiled(nested(), how, torch.randn(2, 4))
    run = Tapping(module).forward(["0", "3"])
    for _ in range(4):  # past the profiling runs after which TorchScript would fuse the graph
        x = torch.randn(3, 4)
        outputs, (linear, last) = run(x)
        seen = {}
        linear.register_hook(lambda grad: seen.__setitem__("linear", grad))
        last.register_hook(lambda grad: seen.__setitem__("last", grad))
        outputs.sum().backward()
        assert torch.equal(seen["last"], torch.ones(3, 2))
        assert seen["linear"] is not None and seen["linear"].shape == (3, 8)


def test_scripted_control_flow():
    module = compiled(Gated(), "script", torch.randn(2, 4))
    x = torch.randn(3, 4)
    outputs, (act, last) = Tapping(module).forward(["act", "last"])(x)
    assert torch.allclose(outputs, module(x)) and torch.equal(last, outputs)
    assert act.shape == (3, 4) and act.abs().max() <= 1


@pytest.mark.parametrize("how", ["trace", "script"])
def test_lstm_output_is_the_sequence_not_the_state(how):
    network = token_network()
    module = compiled(network, how, torch.randint(0, 50, (2, 5)))
    tokens = torch.randint(0, 50, (3, 5))
    _, (lstm,) = Tapping(module).forward(["lstm"])(tokens)
    with torch.no_grad():
        expected, _ = network.lstm(network.emb(tokens))
    assert torch.allclose(lstm, expected, atol=1e-6)


def test_a_path_with_no_top_level_output_is_none():
    module = compiled(nested(), "script", torch.randn(2, 4))
    outputs, taps = Tapping(module).forward(["0", "no.such.module"])(torch.randn(2, 4))
    assert taps[0] is not None and taps[1] is None


def test_a_graph_that_cannot_be_read_is_taps_unavailable():
    class NotScript:
        @property
        def inlined_graph(self):
            raise RuntimeError("no graph here")

    with pytest.raises(TapsUnavailable, match="could not be analysed"):
        Tapping(NotScript())
