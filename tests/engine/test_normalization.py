"""BatchNorm during the probe: batch statistics where the running ones are still initial (an untrained
network, probed as it trains), running statistics where they are calibrated, in every format; ONNX
BatchNormalization with training_mode converts."""

from __future__ import annotations

import warnings

import onnx
import pytest
import torch
from torch import nn

from gradaudit.options import AuditOptions
from worker.engine.audit import audit_network
from worker.engine.normalization import BatchNormLayer, batch_statistics

SHAPE = [8, 3, 8, 8]


def conv_bn(calibrated: bool = False) -> nn.Sequential:
    """Two conv-BN-ReLU blocks whose convolutions are ten times He scale: in eval mode a fresh BatchNorm passes
    that scale on; with batch statistics its output has unit variance."""
    torch.manual_seed(0)
    network = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                            nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    with torch.no_grad():
        for conv in (network[0], network[3]):
            conv.weight.mul_(10.0)
        if calibrated:
            for norm in (network[1], network[4]):
                norm.running_mean.fill_(0.5)
                norm.running_var.fill_(100.0)
    return network.eval()


def export(network: nn.Module, path, how: str):
    x = torch.randn(*SHAPE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if how == "trace":
            torch.jit.trace(network, x).save(str(path))
        elif how == "script":
            torch.jit.script(network).save(str(path))
        elif how == "onnx_unfolded":
            torch.onnx.export(network, (x,), str(path), dynamo=False, do_constant_folding=False, opset_version=15)
        elif how == "onnx_training":
            torch.onnx.export(network.train(), (x,), str(path), dynamo=False, opset_version=15,
                              training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False)
            network.eval()
    return path


def audit(path, how: str, **options):
    shapes = {"input": SHAPE} if how in ("trace", "script") else {}
    return audit_network(path, options=AuditOptions(input_shapes=shapes, **options), device="cpu")


def norm_output_std(result) -> list[float]:
    norms = [layer for layer in result.layers if "BatchNorm" in layer.kind]
    return [row["activation_std"] for layer in norms for row in layer.batch_rows]


@pytest.mark.parametrize("how", ["trace", "script", "onnx_unfolded"])
def test_fresh_batch_norm_is_probed_with_batch_statistics(tmp_path, how):
    path = export(conv_bn(), tmp_path / ("n.onnx" if how.startswith("onnx") else "n.pt"), how)
    fresh = audit(path, how)
    assert fresh.setup["normalization_mode"] == "batch"
    assert len(fresh.setup["normalization_layers"]["batch_statistics"]) == 2
    stds = norm_output_std(fresh)
    assert len(stds) == 6 and all(0.8 < std < 1.2 for std in stds)  # normalised: unit variance per channel
    as_exported = audit(path, how, normalization="running")
    assert as_exported.setup["normalization_mode"] == "running"
    assert all(std > 5 for std in norm_output_std(as_exported))  # an identity passes the 10x scale on


@pytest.mark.parametrize("how", ["trace", "onnx_unfolded"])
def test_calibrated_batch_norm_keeps_its_running_statistics(tmp_path, how):
    path = export(conv_bn(calibrated=True), tmp_path / ("n.onnx" if how.startswith("onnx") else "n.pt"), how)
    result = audit(path, how)
    assert result.setup["normalization_mode"] == "running"
    assert result.setup["normalization_layers"]["batch_statistics"] == []
    assert audit(path, how, normalization="batch").setup["normalization_mode"] == "batch"


def test_onnx_batch_norm_exported_in_training_mode_converts_and_normalises_with_the_batch(tmp_path):
    path = export(conv_bn(calibrated=True), tmp_path / "n.onnx", "onnx_training")
    modes = [a.i for node in onnx.load(str(path)).graph.node for a in node.attribute if a.name == "training_mode"]
    assert modes and all(mode == 1 for mode in modes)
    result = audit(path, "onnx_training", normalization="running")
    assert result.setup["normalization_mode"] == "batch"
    assert all(0.8 < std < 1.2 for std in norm_output_std(result))


def test_a_network_without_batch_norm_says_none(tmp_path):
    network = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).eval()
    path = tmp_path / "n.pt"
    torch.jit.trace(network, torch.randn(2, 4)).save(str(path))
    result = audit_network(path, options=AuditOptions(input_shapes={"input": [4, 4]}), device="cpu")
    assert result.setup["normalization_mode"] == "none"


def test_the_rule_by_option():
    layers = [BatchNormLayer("fresh", True), BatchNormLayer("calibrated", False),
              BatchNormLayer("trained_export", False, exported_in_training_mode=True)]
    assert batch_statistics(layers, "auto", 8) == ["fresh", "trained_export"]
    assert batch_statistics(layers, "batch", 8) == ["fresh", "calibrated", "trained_export"]
    assert batch_statistics(layers, "running", 8) == ["trained_export"]  # the export itself computes that way
    assert batch_statistics(layers, "auto", 1) == ["trained_export"]  # one sample's statistics are no batch's


def test_the_probe_never_changes_running_statistics(tmp_path):
    from worker.engine.formats import load_network, use_batch_statistics

    network = load_network(export(conv_bn(), tmp_path / "n.onnx", "onnx_unfolded"))
    use_batch_statistics(network, [layer.name for layer in network.batch_norms])
    network.module(torch.randn(*SHAPE)).sum().backward()
    buffers = {name: value for name, value in network.module.named_buffers() if "running" in name}
    assert len(buffers) == 4
    assert all(bool(torch.all(value == (0 if "mean" in name else 1))) for name, value in buffers.items())
