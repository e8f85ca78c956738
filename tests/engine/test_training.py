"""The optional short training probe (options.train_steps)."""

from __future__ import annotations

import torch
from torch import nn

from gradaudit.options import AuditOptions
from tests.support.networks import export_onnx, save_torchscript
from worker.engine.audit import audit_network


def _relu_mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)).eval()


def test_no_training_by_default(tmp_path):
    path = save_torchscript(_relu_mlp(), tmp_path / "n.pt")
    result = audit_network(path, options=AuditOptions(input_shapes={"input": [8, 8]}), device="cpu")
    assert "training" not in result.setup


def test_adam_steps_are_recorded_and_change_the_weights(tmp_path):
    path = save_torchscript(_relu_mlp(), tmp_path / "n.pt")
    plain = audit_network(path, options=AuditOptions(input_shapes={"input": [8, 8]}), device="cpu")
    options = AuditOptions(input_shapes={"input": [8, 8]}, train_steps=5, optimizer="adam", learning_rate=0.01)
    trained = audit_network(path, options=options, device="cpu")
    training = trained.setup["training"]
    assert (training["steps"], training["optimizer"]) == (5, "adam") and training["update_to_weight"] > 0
    assert trained.layers[0].weight_norm != plain.layers[0].weight_norm


def test_onnx_parity_is_checked_on_the_uploaded_weights_before_training(tmp_path):
    path = export_onnx(_relu_mlp(), torch.randn(2, 8), tmp_path / "n.onnx", dynamic={0: "b"})
    result = audit_network(path, options=AuditOptions(train_steps=3, learning_rate=0.5), device="cpu")
    assert result.setup["training"]["steps"] == 3 and "training" in result.setup
    assert result.setup["training"]["last_loss"] is not None


def test_high_learning_rate_sgd_kills_relus_the_probe_then_sees(tmp_path):
    path = save_torchscript(_relu_mlp(), tmp_path / "n.pt")
    options = AuditOptions(input_shapes={"input": [8, 8]}, train_steps=20, optimizer="sgd", learning_rate=5.0)
    result = audit_network(path, options=options, device="cpu")
    assert result.setup["training"]["update_to_weight"] > 0.1
    assert any(f["code"] in ("dead_relu", "nonfinite_values", "exploding_gradient") for f in result.findings)
