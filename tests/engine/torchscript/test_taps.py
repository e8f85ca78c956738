"""worker.engine.torchscript.tapping: the graph rewrite on its own, for traced and scripted networks."""

from __future__ import annotations

import io
import warnings

import pytest
import torch
from torch import nn

from tests.support.networks import token_network
from worker.engine.torchscript.tapping import Tapping, TapsUnavailable


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


def observed(run, *inputs) -> tuple[object, dict[int, torch.Tensor]]:
    """The outputs of one tapped run, and a copy of each tapped tensor taken when it was observed."""
    seen = {}
    outputs = run(lambda tap, tensor: seen.__setitem__(tap, tensor.detach().clone()), *inputs)
    return outputs, seen


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
    outputs, seen = observed(Tapping(module).forward(["0", "1", "2.1"]), x)
    linear, relu, tanh = seen[0], seen[1], seen[2]
    with torch.no_grad():
        expected_linear = network[0](x)
    assert torch.allclose(outputs, module(x))
    assert torch.allclose(linear, expected_linear)  # before the in-place ReLU, not after it
    assert torch.allclose(relu, expected_linear.relu())
    assert torch.allclose(tanh, network[2](expected_linear.relu()))


@pytest.mark.parametrize("how", ["trace", "script"])
def test_tapped_tensors_get_their_own_gradient_on_every_call(how):
    network = nested()
    module = compiled(network, how, torch.randn(2, 4))
    run = Tapping(module).forward(["0", "3"])
    for _ in range(4):  # past the profiling runs after which TorchScript would fuse the graph
        x = torch.randn(3, 4)
        seen = {}
        outputs = run(lambda tap, tensor: tensor.register_hook(lambda grad: seen.__setitem__(tap, grad)), x)
        outputs.sum().backward()
        assert torch.equal(seen[1], torch.ones(3, 2))
        # The first Linear's output is overwritten by the in-place ReLU; its hook still gets the gradient with
        # respect to the Linear's output: zero where the ReLU cut it off.
        with torch.no_grad():
            cut = network[0](x) <= 0
        assert seen[0].shape == (3, 8) and torch.all(seen[0][cut] == 0) and seen[0][~cut].abs().sum() > 0


def test_in_place_ops_stay_in_place():
    graph = str(compiled(nested(), "trace", torch.randn(2, 4)).inlined_graph)
    assert "aten::relu_" in graph
    module = compiled(nested(), "trace", torch.randn(2, 4))
    tapping = Tapping(module)
    tapping.forward(["0", "1"])
    assert "aten::relu_" in str(tapping._graph) and str(tapping._graph).count("gradaudit::observe") == 2


def test_scripted_control_flow():
    module = compiled(Gated(), "script", torch.randn(2, 4))
    x = torch.randn(3, 4)
    outputs, seen = observed(Tapping(module).forward(["act", "last"]), x)
    act, last = seen[0], seen[1]
    assert torch.allclose(outputs, module(x)) and torch.equal(last, outputs.detach())
    assert act.shape == (3, 4) and act.abs().max() <= 1


@pytest.mark.parametrize("how", ["trace", "script"])
def test_lstm_output_is_the_sequence_not_the_state(how):
    network = token_network()
    module = compiled(network, how, torch.randint(0, 50, (2, 5)))
    tokens = torch.randint(0, 50, (3, 5))
    _, seen = observed(Tapping(module).forward(["lstm"]), tokens)
    lstm = seen[0]
    with torch.no_grad():
        expected, _ = network.lstm(network.emb(tokens))
    assert torch.allclose(lstm, expected, atol=1e-6)


def test_a_path_with_no_top_level_output_is_never_observed():
    module = compiled(nested(), "script", torch.randn(2, 4))
    _, seen = observed(Tapping(module).forward(["0", "no.such.module"]), torch.randn(2, 4))
    assert list(seen) == [0]


def test_a_graph_that_cannot_be_read_is_taps_unavailable():
    class NotScript:
        @property
        def inlined_graph(self):
            raise RuntimeError("no graph here")

    with pytest.raises(TapsUnavailable, match="could not be analysed"):
        Tapping(NotScript())


def test_modules_held_in_a_module_list_are_found_under_their_own_names():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True, dropout=0.0)
    encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    tapping = Tapping(reloaded(torch.jit.trace(encoder, torch.randn(2, 5, 8), check_trace=False)))
    assert {"layers.0", "layers.0.linear1", "layers.1.norm2", "layers.1.self_attn"} <= set(tapping.outputs)
    assert tapping.outputs["layers.1"].producer == "layers.1.norm2"
