"""Findings from real probes of tiny networks, saved as TorchScript or ONNX and audited end to end."""

from __future__ import annotations

import pytest
import torch

from gradaudit.options import AuditOptions
from tests.support.networks import LogOfNegative, deep_sigmoid, export_onnx, save_torchscript
from worker.diagnosis.diagnose import FINDING_CODES, RECOMMENDATION_CODES
from worker.engine.audit import audit_network


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
    assert finding["evidence"]["fitted_change_decades"] < -6 and finding["evidence"]["layers_fitted"] == 12  # below the output layer
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


def test_infinite_weights_recommend_reinitialising_them_at_their_activation_s_scale(tmp_path):
    network = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    with torch.no_grad():
        network[0].weight[0, 0] = float("inf")
    path = save_torchscript(network, tmp_path / "inf.pt")
    result = audit_network(path, options=AuditOptions(input_shapes={"input": [4, 4]}), device="cpu")
    finding = result.findings[0]
    assert finding["code"] == "nonfinite_values" and finding["evidence"]["nonfinite_weight_entries"] == 1
    reinit = next(r for r in finding["recommendations"] if r["code"].startswith("reinit_"))
    assert reinit["code"] == "reinit_he" and "'0'" in reinit["text"]  # the broken layer feeds a ReLU
    assert result.layers[0].weight_norm > 0 and result.layers[0].weight_norm < float("inf")
