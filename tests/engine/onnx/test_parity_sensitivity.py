"""onnxruntime parity on chaotic networks: a gap within the network's own float32 rounding is not a mismatch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from gradaudit.errors import AuditError
from gradaudit.options import AuditOptions
from tests.support.networks import export_onnx
from worker.engine.audit import audit_network
from worker.engine.onnx.parity import float64_disagreement, parity_setup


def _chaotic_tanh(depth: int = 24, width: int = 64, gain: float = 4.0) -> nn.Sequential:
    """Schoenholz et al. 2017's chaotic phase: tanh layers with weight variance far above criticality."""
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(depth):
        linear = nn.Linear(width, width)
        nn.init.normal_(linear.weight, std=gain / math.sqrt(width))
        nn.init.zeros_(linear.bias)
        layers += [linear, nn.Tanh()]
    return nn.Sequential(*layers, nn.Linear(width, 10)).eval()


def test_a_chaotic_network_audits_with_its_rounding_sensitivity_recorded(tmp_path):
    path = export_onnx(_chaotic_tanh(), torch.randn(8, 64), tmp_path / "chaos.onnx")

    result = audit_network(path, options=AuditOptions(input_shapes={"x": [8, 64]}, batches=1), device="cpu")

    setup = result.setup
    assert setup["onnxruntime_max_abs_diff"] > setup["onnxruntime_tolerance"]
    assert setup["onnxruntime_max_abs_diff"] <= 10 * setup["float32_rounding_sensitivity"]


def test_a_gap_beyond_rounding_sensitivity_is_still_a_mismatch():
    ours = torch.zeros(2, 3)
    reference = [np.full((2, 3), 0.5, dtype=np.float32)]

    with pytest.raises(AuditError) as refused:
        parity_setup(reference, None, 0, ours, rounding_sensitivity=lambda: 1e-6)

    assert refused.value.code == "conversion_mismatch"


def test_float64_disagreement_of_a_stable_network_is_rounding_sized():
    torch.manual_seed(0)
    network = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2)).eval()

    gap = float64_disagreement(network, [torch.randn(4, 8)], lambda output: output)

    assert gap is not None and gap < 1e-5
