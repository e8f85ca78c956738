"""BatchNorm folded away by the exporter: restored where untrained, left alone where calibrated or absent."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from gradaudit.options import AuditOptions
from suites.networks import calibrate_batch_norm
from worker.engine.audit import audit_network

SHAPE = [4, 3, 16, 16]
ROUTES = {"legacy": {"dynamo": False}, "dynamo": {}}


def _convolutions(batch_norm: bool, depth: int = 7) -> nn.Sequential:
    torch.manual_seed(0)
    layers, channels = [], 3
    for _ in range(depth):
        layers += [nn.Conv2d(channels, 16, 3, padding=1, bias=not batch_norm)]
        layers += [nn.BatchNorm2d(16)] if batch_norm else []
        layers += [nn.ReLU()]
        channels = 16
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)).eval()


def _audit(network, tmp_path, route, **options):
    path = tmp_path / f"{route}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(network, (torch.randn(SHAPE),), str(path), input_names=["x"], **ROUTES[route])
    return audit_network(path, options=AuditOptions(input_shapes={"x": SHAPE}, batch_size=4, **options),
                         device="cpu", external_data_dir=tmp_path)


def _codes(result) -> set[str]:
    return {f["code"] for f in result.findings if f["severity"] != "info"}


@pytest.mark.parametrize("route", ROUTES)
def test_untrained_batch_norm_folded_by_the_exporter_is_restored_and_probed_as_training_runs(route, tmp_path):
    result = _audit(_convolutions(batch_norm=True), tmp_path, route)
    assert len(result.setup["restored_batch_norms"]) == 7
    assert result.setup["normalization_mode"] == "batch"
    assert result.setup["onnxruntime_max_abs_diff"] <= result.setup["onnxruntime_tolerance"]
    assert _codes(result) == set()
    # The same file probed as exported (BatchNorm an identity) is what the restoration corrects.
    assert _codes(_audit(_convolutions(batch_norm=True), tmp_path, route, normalization="running"))


@pytest.mark.parametrize("route", ROUTES)
def test_calibrated_batch_norm_folded_by_the_exporter_is_left_as_exported(route, tmp_path):
    network = calibrate_batch_norm(_convolutions(batch_norm=True), SHAPE, seed=0)
    assert "restored_batch_norms" not in _audit(network, tmp_path, route).setup


@pytest.mark.parametrize("route", ROUTES)
def test_convolutions_without_batch_norm_are_not_taken_for_folded_ones(route, tmp_path):
    result = _audit(_convolutions(batch_norm=False), tmp_path, route)
    assert "restored_batch_norms" not in result.setup and result.setup["normalization_mode"] == "none"
