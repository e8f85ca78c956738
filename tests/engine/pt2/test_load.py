"""A .pt2 archive loads with its signature's input shapes, every module call is tapped, and its layers are the
ones the TorchScript trace of the same network reports."""

from __future__ import annotations

import torch
from torch import nn

from gradaudit.options import AuditOptions
from suites import networks
from tests.engine.pt2.conftest import save_pt2
from tests.support.networks import cnn_bn, mlp, save_torchscript
from worker.engine.audit import audit_network
from worker.engine.formats import load_network, taps_for


def _same_network_both_ways(network: nn.Module, example: torch.Tensor, tmp_path):
    pt2 = load_network(save_pt2(network, tmp_path / "n.pt2", example))
    script = load_network(save_torchscript(network, tmp_path / "n.pt", example))
    return pt2, script


def _names(taps) -> list[tuple[str, str, list[str]]]:
    return [(layer.name, layer.kind, layer.parameter_names) for layer in taps.layers]


def test_mlp_inputs_come_from_the_signature(mlp_pt2):
    network = load_network(mlp_pt2)
    assert network.format == "pt2"
    assert [(spec.name, spec.dims, spec.dtype) for spec in network.inputs] == [("input", [8, 6], torch.float32)]
    assert dict(network.module.named_parameters()).keys() == dict(mlp().named_parameters()).keys()


def test_mlp_layers_and_taps_equal_the_torchscript_trace(tmp_path):
    pt2, script = _same_network_both_ways(mlp(), torch.randn(8, 6), tmp_path)
    pt2_taps, script_taps = taps_for(pt2), taps_for(script)
    assert _names(pt2_taps) == _names(script_taps)
    assert pt2_taps.tapped == len(pt2_taps.layers) == 5  # three Linear and two ReLU calls


def test_cnn_with_batch_norm_taps_every_leaf_layer(tmp_path):
    pt2, script = _same_network_both_ways(cnn_bn(), torch.randn(4, 3, 8, 8), tmp_path)
    taps = taps_for(pt2)
    assert _names(taps) == _names(script_taps := taps_for(script)) and script_taps.tapped == taps.tapped
    assert [layer.name for layer in taps.layers] == ["0", "1", "2", "4"]  # Flatten is layout only
    assert [(bn.name, bn.initial) for bn in pt2.batch_norms] == [("1", True)]
    assert pt2.op_counts == script.op_counts and pt2.structure == script.structure


def test_residual_blocks_are_layers_of_their_own_add(tmp_path):
    network = networks.ResidualCNN(4, 3, False).eval()
    pt2, script = _same_network_both_ways(network, torch.randn(2, 3, 8, 8), tmp_path)
    assert _names(taps_for(pt2)) == _names(taps_for(script))
    assert pt2.structure == script.structure and pt2.structure.skips > 0


def test_probe_records_every_layer_and_gradients_match_torchscript(tmp_path):
    network, example = cnn_bn(), torch.randn(4, 3, 8, 8)
    pt2 = audit_network(save_pt2(network, tmp_path / "c.pt2", example), options=AuditOptions(), device="cpu")
    script = audit_network(save_torchscript(network, tmp_path / "c.pt", example),
                           options=AuditOptions(input_shapes={"input": [4, 3, 8, 8]}), device="cpu")
    assert pt2.network["format"] == "pt2" and all(layer.batch_rows for layer in pt2.layers)
    assert [layer.name for layer in pt2.layers] == [layer.name for layer in script.layers]
    for ours, theirs in zip(pt2.layers, script.layers):
        assert abs(ours.grad_norm - theirs.grad_norm) <= 1e-5 * max(1.0, theirs.grad_norm)
    assert pt2.setup["normalization_layers"] == script.setup["normalization_layers"] == {
        "batch_statistics": ["1"], "running_statistics": []}


def test_batch_statistics_rewrite_normalises_each_batch(tmp_path):
    network = load_network(save_pt2(cnn_bn(), tmp_path / "c.pt2", torch.randn(4, 3, 8, 8)))
    batch = torch.randn(4, 3, 8, 8) * 5 + 3
    from worker.engine.formats import use_batch_statistics

    use_batch_statistics(network, ["1"])
    expected = cnn_bn().train()
    expected[1].momentum = 0.0
    assert torch.allclose(network.module(batch), expected(batch), atol=1e-5)
    assert torch.equal(dict(network.module.named_buffers())["1.running_mean"], torch.zeros(4))


def test_taps_leave_the_graph_as_it_was(mlp_pt2):
    network = load_network(mlp_pt2)
    before = str(network.module.graph)
    audit_network(mlp_pt2, options=AuditOptions(), device="cpu")
    result = audit_network(mlp_pt2, options=AuditOptions(), device="cpu")
    assert str(network.module.graph) == before and len(result.layers) == 5


def test_submodule_names_that_are_not_identifiers_load_as_torchscript_names_them(tmp_path):
    # torchvision's RegNet names its blocks "block1-0" through add_module; the screen must take such paths.
    network = nn.Sequential()
    network.add_module("block1-0", nn.Linear(6, 4))
    network.add_module("act", nn.ReLU())
    pt2, script = _same_network_both_ways(network.eval(), torch.randn(8, 6), tmp_path)
    assert _names(taps_for(pt2)) == _names(taps_for(script))
    assert "block1-0.weight" in dict(pt2.module.named_parameters())
