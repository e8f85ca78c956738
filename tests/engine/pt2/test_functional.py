"""worker.engine.pt2.functional: a weight layer never called as a module but whose weight one op reads is tapped
at that op, under the same name as through TorchScript, with the kind of the module its op stands for."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from tests.engine.pt2.conftest import save_pt2
from tests.support.functional_networks import EXAMPLE, WEIGHT_LAYERS, PassesOn, ReadTwice, audit_rows, swin_like
from tests.support.networks import save_torchscript
from worker.engine.pt2.load import load_exported_program
from worker.engine.pt2.taps import layer_taps
from worker.engine.torchscript.load import load_torchscript
from worker.engine.torchscript.taps import layer_taps as torchscript_taps


class Attending(nn.Module):
    """nn.MultiheadAttention, which hands out_proj's weight to F.linear instead of calling out_proj."""

    def __init__(self):
        super().__init__()
        self.attn, self.head = nn.MultiheadAttention(8, 2, batch_first=True), nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.attn(x, x, x, need_weights=False)[0])


@pytest.fixture(scope="module")
def swin_pt2(tmp_path_factory):
    return save_pt2(swin_like(), tmp_path_factory.mktemp("swin") / "swin.pt2", torch.randn(*EXAMPLE))


def test_every_weight_layer_of_functional_attention_is_tapped(swin_pt2):
    taps = layer_taps(load_exported_program(swin_pt2))
    weights = [layer.name for layer in taps.layers if layer.parameter_names]
    assert weights == WEIGHT_LAYERS
    assert {layer.name: layer.kind for layer in taps.layers}["blocks.1.attn.proj"] == "Linear"
    assert taps.tapped == len(taps.layers)


def test_every_weight_layer_has_batch_rows_and_the_same_name_as_through_torchscript(swin_pt2, tmp_path):
    rows = audit_rows(swin_pt2)
    script = save_torchscript(swin_like(), tmp_path / "swin.pt", torch.randn(*EXAMPLE))
    assert all(rows[name] > 0 for name in WEIGHT_LAYERS), rows
    assert rows == audit_rows(script, input_shapes={"x": list(EXAMPLE)})


def test_a_weight_read_by_two_ops_stays_untapped(tmp_path):
    path = save_pt2(ReadTwice(), tmp_path / "twice.pt2", torch.randn(4, 6))
    taps = layer_taps(load_exported_program(path))
    assert [layer.name for layer in taps.layers] == ["shared", "head"] and taps.tapped == 1
    rows = audit_rows(path)
    assert rows["shared"] == 0 and rows["head"] > 0


def test_a_caller_passing_the_op_on_is_no_row_of_its_own(tmp_path):
    taps = layer_taps(load_exported_program(save_pt2(PassesOn(), tmp_path / "passes.pt2", torch.randn(4, 6))))
    assert [layer.name for layer in taps.layers] == ["block.proj", "head"] and taps.tapped == 2


def test_multihead_attention_out_proj_is_tapped_in_both_formats(tmp_path):
    torch.manual_seed(0)
    network, x = Attending().eval(), torch.randn(2, 5, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(network, x, check_trace=False).save(str(tmp_path / "attn.pt"))  # with grad: no fast path
    script = torchscript_taps(load_torchscript(tmp_path / "attn.pt"))
    pt2 = layer_taps(load_exported_program(save_pt2(network, tmp_path / "attn.pt2", x)))
    for taps in (script, pt2):
        assert [layer.name for layer in taps.layers] == ["attn", "attn.out_proj", "head"] and taps.tapped == 3
