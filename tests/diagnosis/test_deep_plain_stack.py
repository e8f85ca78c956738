"""deep_plain_stack on a normalised plain stack whose gradient drifts without crossing the trend thresholds."""

from __future__ import annotations

from tests.diagnosis.suite import export, he2016
from worker.engine import audit_network


def test_a_24_layer_plain_batchnorm_stack_is_a_deep_plain_stack(tmp_path):
    plain, residual = he2016(depth=24, width=16, seed=0)
    plain_path, options = export(plain, "torchscript", tmp_path)
    residual_path, residual_options = export(residual, "torchscript", tmp_path)

    found = audit_network(plain_path, options=options, device="cpu").findings
    control = audit_network(residual_path, options=residual_options, device="cpu")

    stack = next(f for f in found if f["code"] == "deep_plain_stack")
    assert stack["evidence"]["shortest_gradient_path_weight_layers"] >= 20
    assert 1.0 <= abs(stack["evidence"]["gradient_fitted_change_decades"]) < 1.5  # under the trend thresholds
    assert stack["recommendations"][0]["code"] == "add_skip_connections"
    assert control.verdict == "healthy"
