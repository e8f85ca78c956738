"""Diagnosis: findings from real probes of tiny networks, and the trend rule on hand-made numbers."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from gradaudit.options import AuditOptions
from tests.engine.conftest import LogOfNegative, deep_sigmoid, export_onnx, save_torchscript
from worker.engine.audit import audit_network
from worker.diagnosis.diagnose import FINDING_CODES, RECOMMENDATION_CODES, diagnose, verdict
from gradaudit.schema import LayerRecord
from worker.diagnosis.facts import NetworkFacts


def _layer(depth: int, grad_norm: float, parameters: int = 100) -> LayerRecord:
    return LayerRecord(name=f"fc{depth}", kind="Linear", depth=depth, parameters=parameters, weight_norm=1.0,
                      grad_norm=grad_norm, grad_mean_abs=0.0, grad_std=0.0, grad_max_abs=0.0,
                      grad_zero_fraction=0.0, grad_nonfinite=0, grad_to_weight=grad_norm)


def _diagnose(layers, op_counts=None):
    return diagnose(NetworkFacts(layers=layers, op_counts=op_counts or {}))


def _assert_well_formed(finding):
    assert finding["code"] in FINDING_CODES and finding["severity"] in ("info", "warning", "critical")
    assert all(r["code"] in RECOMMENDATION_CODES and r["text"] for r in finding["recommendations"])


@pytest.mark.parametrize("export", ["torchscript", "onnx"])
def test_deep_sigmoid_mlp_is_vanishing(tmp_path, export):
    network = deep_sigmoid()
    if export == "onnx":
        path = export_onnx(network, torch.randn(2, 32), tmp_path / "s.onnx", dynamic={0: "b"})
        options = AuditOptions()
    else:
        path, options = save_torchscript(network, tmp_path / "s.pt"), AuditOptions(input_shapes={"input": [8, 32]})
    result = audit_network(path, options=options, device="cpu")
    finding = result.findings[0]
    _assert_well_formed(finding)
    assert finding["code"] == "vanishing_gradient" and result.verdict == "critical"
    assert finding["evidence"]["fitted_change_decades"] < -6 and finding["evidence"]["layers_fitted"] == 13
    assert finding["layers"][0] == result.layers[0].name
    assert [r["code"] for r in finding["recommendations"]][0] == "use_relu"


def test_healthy_relu_mlp(mlp_script):
    result = audit_network(mlp_script, options=AuditOptions(input_shapes={"input": [8, 6]}), device="cpu")
    assert result.findings == [] and result.verdict == "healthy"


def test_nan_from_log_of_negative_is_critical_and_named_from_the_output_side(tmp_path):
    path = save_torchscript(LogOfNegative(), tmp_path / "nan.pt")
    result = audit_network(path, options=AuditOptions(input_shapes={"x": [4, 4]}), device="cpu")
    finding = result.findings[0]
    _assert_well_formed(finding)
    assert (finding["code"], finding["severity"], result.verdict) == ("nonfinite_values", "critical", "critical")
    assert finding["evidence"]["first_layer"] == "last" and finding["evidence"]["loss_finite"] is False


def test_infinite_weights_recommend_reinitialising_them(tmp_path):
    network = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    with torch.no_grad():
        network[0].weight[0, 0] = float("inf")
    path = save_torchscript(network, tmp_path / "inf.pt")
    result = audit_network(path, options=AuditOptions(input_shapes={"input": [4, 4]}), device="cpu")
    finding = result.findings[0]
    assert finding["code"] == "nonfinite_values" and finding["evidence"]["nonfinite_weight_entries"] == 1
    assert "reinit_xavier" in [r["code"] for r in finding["recommendations"]]
    assert result.layers[0].weight_norm > 0 and result.layers[0].weight_norm < float("inf")


def test_growing_gradients_toward_the_input_are_exploding_with_a_clip_value():
    layers = [_layer(depth, 10.0 ** (2 - 0.6 * depth)) for depth in range(6)]  # 3 decades of growth
    findings = _diagnose(layers)
    assert [(f["code"], f["severity"]) for f in findings] == [("exploding_gradient", "warning")]
    clip = findings[0]["recommendations"][0]
    assert clip["code"] == "clip_gradients" and "max_norm=" in clip["text"]
    assert findings[0]["layers"][0] == "fc0"


def test_trend_ignores_a_common_scale_of_all_gradients():
    shrinking = [_layer(depth, 10.0 ** (depth - 7)) for depth in range(8)]
    scaled = [dataclasses.replace(s, grad_norm=s.grad_norm * 1e5) for s in shrinking]
    slope = _diagnose(shrinking)[0]["evidence"]["slope_decades_per_layer"]
    assert slope == pytest.approx(_diagnose(scaled)[0]["evidence"]["slope_decades_per_layer"])
    assert _diagnose(shrinking)[0]["severity"] == "critical"


def test_small_spread_and_too_few_layers_are_not_findings():
    assert _diagnose([_layer(d, 10.0 ** (d * 0.3)) for d in range(4)]) == []  # 0.9 decades
    assert _diagnose([_layer(0, 1e-9), _layer(1, 1.0)]) == []  # only two layers: no trend


def test_use_relu_only_when_squashing_activations_exist():
    layers = [_layer(depth, 10.0 ** depth) for depth in range(5)]
    plain = [r["code"] for r in _diagnose(layers, {"relu": 4})[0]["recommendations"]]
    squashed = [r["code"] for r in _diagnose(layers, {"tanh": 4})[0]["recommendations"]]
    assert "use_relu" not in plain and squashed[0] == "use_relu"
    assert "add_batch_norm" not in [r["code"] for r in _diagnose(layers, {"batch_norm": 1})[0]["recommendations"]]


def test_verdict_is_the_worst_severity():
    assert verdict([]) == "healthy"
    assert verdict([{"severity": "info"}]) == "healthy"
    assert verdict([{"severity": "warning"}, {"severity": "critical"}]) == "critical"
