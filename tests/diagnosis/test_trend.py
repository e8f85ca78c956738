"""The gradient-trend rule and the verdict on hand-made numbers: no torch, no engine."""

from __future__ import annotations

import dataclasses

import pytest

from gradaudit.schema import LayerRecord
from worker.diagnosis.diagnose import diagnose, verdict
from worker.diagnosis.facts import NetworkFacts


def _layer(depth: int, grad_norm: float, parameters: int = 100) -> LayerRecord:
    return LayerRecord(name=f"fc{depth}", kind="Linear", depth=depth, parameters=parameters, weight_norm=1.0,
                      grad_norm=grad_norm, grad_mean_abs=0.0, grad_std=0.0, grad_max_abs=0.0,
                      grad_zero_fraction=0.0, grad_nonfinite=0, grad_to_weight=grad_norm)


def _diagnose(layers, op_counts=None):
    return diagnose(NetworkFacts(layers=layers, op_counts=op_counts or {}))


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
