"""deep_plain_stack on a normalised plain stack whose gradient drifts as BatchNorm makes it, no trend warning."""

from __future__ import annotations

import pytest

from suites.diagnosis import export, he2016
from worker.engine.audit import audit_network

pytestmark = pytest.mark.slow


def test_a_24_layer_plain_batchnorm_stack_is_a_deep_plain_stack(tmp_path):
    plain, residual = he2016(depth=24, width=16, seed=0)[:2]  # the calibrated pair
    plain_path, options = export(plain, "torchscript", tmp_path)
    residual_path, residual_options = export(residual, "torchscript", tmp_path)

    found = audit_network(plain_path, options=options, device="cpu").findings
    control = audit_network(residual_path, options=residual_options, device="cpu")

    stack = next(f for f in found if f["code"] == "deep_plain_stack")
    assert stack["evidence"]["shortest_gradient_path_weight_layers"] >= 20
    assert abs(stack["evidence"]["gradient_fitted_change_decades"]) >= 1.0
    # The growth is BatchNorm's own (reported as info, or explained by the stack), never a trend warning.
    assert not [f for f in found if f["code"] in ("exploding_gradient", "vanishing_gradient") and f["severity"] != "info"]
    assert stack["recommendations"][0]["code"] == "add_skip_connections"
    assert control.verdict == "healthy"


def test_batchnorm_folded_into_the_convolutions_is_not_blamed_on_initialisation(tmp_path):
    # The legacy ONNX exporter folds the calibrated BatchNorm into the convolutions: their weights predict 2.5
    # decades of growth, but the forward stays in scale, so the weights are not what drives the gradient.
    plain = he2016(depth=32, width=8, seed=0)[0]
    path, options = export(plain, "onnx", tmp_path)

    found = {f["code"]: f for f in audit_network(path, options=options, device="cpu").findings}

    assert "poor_initialization" not in found
    assert found["deep_plain_stack"]["recommendations"][0]["code"] == "add_skip_connections"
