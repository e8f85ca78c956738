"""worker.engine.torchscript.functional: a weight layer never called as a module but whose weight one op reads
(Swin's attention passing self.qkv.weight to F.linear) is tapped at that op, named by its module path."""

from __future__ import annotations

import pytest
import torch

from tests.support.functional_networks import (
    EXAMPLE,
    WEIGHT_LAYERS,
    PassesOn,
    ReadTwice,
    audit_rows,
    swin_like,
)
from tests.support.networks import save_torchscript
from worker.engine.torchscript.load import load_torchscript
from worker.engine.torchscript.tapping import Tapping
from worker.engine.torchscript.taps import layer_taps


@pytest.fixture(scope="module")
def swin_pt(tmp_path_factory):
    return save_torchscript(swin_like(), tmp_path_factory.mktemp("swin") / "swin.pt", torch.randn(*EXAMPLE))


def test_every_weight_layer_of_functional_attention_is_tapped(swin_pt):
    taps = layer_taps(load_torchscript(swin_pt))
    weights = [layer.name for layer in taps.layers if layer.parameter_names]
    assert weights == WEIGHT_LAYERS
    assert {layer.name: layer.kind for layer in taps.layers}["blocks.0.attn.qkv"] == "Linear"
    assert taps.tapped == len(taps.layers)


def test_the_tap_observes_the_op_reading_the_weight(swin_pt):
    module = torch.jit.load(str(swin_pt)).eval()
    x, seen = torch.randn(*EXAMPLE), {}
    Tapping(module).forward(["blocks.1.attn.qkv"])(lambda tap, tensor: seen.__setitem__(tap, tensor.detach()), x)
    network = swin_like()
    with torch.no_grad():
        hidden = network.blocks[0](network.embed(x))
        assert torch.allclose(seen[0], network.blocks[1].attn.qkv(hidden), atol=1e-6)


def test_every_weight_layer_has_batch_rows_in_the_report(swin_pt):
    rows = audit_rows(swin_pt, input_shapes={"x": list(EXAMPLE)})
    assert all(rows[name] > 0 for name in WEIGHT_LAYERS), rows


def test_a_weight_read_by_two_ops_stays_untapped(tmp_path):
    path = save_torchscript(ReadTwice().eval(), tmp_path / "twice.pt", torch.randn(4, 6))
    taps = layer_taps(load_torchscript(path))
    assert [layer.name for layer in taps.layers] == ["shared", "head"] and taps.tapped == 1
    rows = audit_rows(path, input_shapes={"x": [4, 6]})
    assert rows["shared"] == 0 and rows["head"] > 0


def test_a_caller_passing_the_op_on_is_no_row_of_its_own(tmp_path):
    path = save_torchscript(PassesOn().eval(), tmp_path / "passes.pt", torch.randn(4, 6))
    taps = layer_taps(load_torchscript(path))
    assert [layer.name for layer in taps.layers] == ["block.proj", "head"] and taps.tapped == 2
