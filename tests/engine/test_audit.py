"""audit_network end to end: numbers match plain torch, formats agree, runs repeat, .npz batches are used."""

from __future__ import annotations

import json
import math
from dataclasses import asdict

import numpy as np
import pytest
import torch

from gradaudit.options import AuditOptions
from tests.support.networks import export_onnx, mlp, save_torchscript, token_network
from worker.engine.audit import audit_network


def weight_layers(result) -> list:
    """The layers that own parameters (the report also lists parameter-free ones such as ReLU)."""
    return [s for s in result.layers if s.parameters > 0]


def test_torchscript_stats_match_plain_torch(tmp_path, mlp_script):
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(1))
    np.savez(tmp_path / "batch.npz", input=x.numpy())
    result = audit_network(mlp_script, options=AuditOptions(loss="sum"), device="cpu",
                           inputs_path=tmp_path / "batch.npz")
    network = mlp()
    network(x).sum().backward()
    for stats, index in zip(weight_layers(result), (0, 2, 4)):
        linear = network[index]
        grads = torch.cat([linear.weight.grad.flatten(), linear.bias.grad.flatten()]).double()
        weights = torch.cat([linear.weight.flatten(), linear.bias.flatten()]).double()
        assert stats.parameters == grads.numel()
        assert stats.grad_norm == pytest.approx(grads.norm().item(), rel=1e-5)
        assert stats.weight_norm == pytest.approx(weights.norm().item(), rel=1e-6)
        assert stats.grad_mean_abs == pytest.approx(grads.abs().mean().item(), rel=1e-5)
        assert stats.grad_std == pytest.approx(grads.std(correction=0).item(), rel=1e-5)
        assert stats.grad_max_abs == pytest.approx(grads.abs().max().item(), rel=1e-5)
        assert stats.grad_zero_fraction == pytest.approx((grads == 0).double().mean().item())
        assert stats.grad_to_weight == pytest.approx(stats.grad_norm / stats.weight_norm)
    assert result.setup["input_shapes"] == {"input": [5, 6]} and result.setup["loss"] == "sum"


def test_onnx_and_torchscript_give_the_same_gradients(mlp_onnx, mlp_script):
    options = AuditOptions(input_shapes={"x": [8, 6]}, seed=4)
    from_onnx = audit_network(mlp_onnx, options=options, device="cpu")
    from_script = audit_network(mlp_script, options=AuditOptions(input_shapes={"input": [8, 6]}, seed=4),
                                device="cpu")
    assert [s.grad_norm for s in weight_layers(from_onnx)] == pytest.approx(
        [s.grad_norm for s in weight_layers(from_script)], rel=1e-4)
    assert from_onnx.setup["loss"] == from_script.setup["loss"] == "cross_entropy"
    assert from_onnx.setup["onnxruntime_max_abs_diff"] < 1e-4


def test_token_lstm_network_same_gradients_in_both_formats(tmp_path):
    onnx_path = export_onnx(token_network(), torch.randint(0, 50, (2, 5)), tmp_path / "tok.onnx", name="tokens",
                            dynamic={0: "b"})
    script_path = save_torchscript(token_network(), tmp_path / "tok.pt")
    options = AuditOptions(input_shapes={"tokens": [4, 5]}, batches=1)
    from_onnx = audit_network(onnx_path, options=options, device="cpu")
    from_script = audit_network(script_path, options=options, device="cpu")
    assert [s.kind for s in weight_layers(from_onnx)] == ["Gather", "LSTM", "Gemm"]
    assert [s.grad_norm for s in weight_layers(from_onnx)] == pytest.approx(
        [s.grad_norm for s in weight_layers(from_script)], rel=1e-4)
    assert from_onnx.layers[0].grad_zero_fraction > 0.5  # 4x5 tokens touch few of the 50 embedding rows


def test_same_seed_same_numbers_other_seed_other_numbers(mlp_onnx):
    first = audit_network(mlp_onnx, options=AuditOptions(seed=7), device="cpu")
    again = audit_network(mlp_onnx, options=AuditOptions(seed=7), device="cpu")
    other = audit_network(mlp_onnx, options=AuditOptions(seed=8), device="cpu")
    assert first == again
    assert [s.grad_norm for s in first.layers] != [s.grad_norm for s in other.layers]


def test_npz_batch_is_used_instead_of_synthetic(tmp_path, mlp_onnx):
    np.savez(tmp_path / "batch.npz", x=np.ones((3, 6), dtype=np.float64))
    result = audit_network(mlp_onnx, options=AuditOptions(), device="cpu", inputs_path=tmp_path / "batch.npz")
    assert result.setup["input_shapes"] == {"x": [3, 6]} and result.setup["batch_size"] == 3


def test_dynamic_batch_takes_options_batch_size_and_setup_is_complete(mlp_onnx):
    result = audit_network(mlp_onnx, options=AuditOptions(batch_size=5, loss="mse"), device="cpu")
    assert result.setup["input_shapes"] == {"x": [5, 6]}
    assert {"device", "batch_size", "seed", "loss", "input_shapes", "output"} <= set(result.setup)
    assert result.setup["loss"] == "mse" and result.setup["device"] == "cpu"
    # Gemm, Relu, Gemm, Relu, Gemm: parameter-free layers count too.
    assert result.network == {"format": "onnx", "parameters": 6 * 16 + 16 + 16 * 16 + 16 + 16 * 4 + 4, "layers": 5}


def test_auto_loss_falls_back_to_mse_for_a_single_column(tmp_path):
    path = save_torchscript(torch.nn.Linear(3, 1), tmp_path / "reg.pt")
    result = audit_network(path, options=AuditOptions(input_shapes={"input": [4, 3]}), device="cpu")
    assert result.setup["loss"] == "mse"


def test_first_float_output_is_used_when_there_are_several(tmp_path):
    class TwoHeads(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(3, 4)

        def forward(self, x):
            logits = self.fc(x)
            return logits.argmax(dim=1), logits

    path = save_torchscript(TwoHeads(), tmp_path / "two.pt")
    result = audit_network(path, options=AuditOptions(input_shapes={"x": [4, 3]}), device="cpu")
    assert result.setup["output"] == "output[1]" and result.setup["loss"] == "cross_entropy"


def test_result_is_json_safe_even_with_nan(tmp_path):
    from tests.support.networks import LogOfNegative

    path = save_torchscript(LogOfNegative(), tmp_path / "nan.pt")
    result = audit_network(path, options=AuditOptions(input_shapes={"x": [4, 4]}), device="cpu")
    json.dumps({**asdict(result)}, allow_nan=False)
    assert result.setup["loss_value"] is None
    assert all(math.isfinite(s.grad_norm) for s in result.layers)
    assert result.layers[-1].grad_nonfinite > 0


def test_cnn_with_batchnorm_matches_torchscript_and_onnxruntime(tmp_path):
    from tests.support.networks import cnn_bn

    onnx_path = export_onnx(cnn_bn(), torch.randn(2, 3, 8, 8), tmp_path / "cnn.onnx", dynamic={0: "b"},
                            do_constant_folding=False, training=torch.onnx.TrainingMode.PRESERVE)
    script_path = save_torchscript(cnn_bn(), tmp_path / "cnn.pt")
    from_onnx = audit_network(onnx_path, options=AuditOptions(batch_size=4), device="cpu")
    from_script = audit_network(script_path, options=AuditOptions(input_shapes={"input": [4, 3, 8, 8]}),
                                device="cpu")
    assert from_onnx.setup["onnxruntime_max_abs_diff"] < 1e-4
    assert [s.kind for s in weight_layers(from_script)] == ["Conv2d", "BatchNorm2d", "Linear"]
    assert [s.grad_norm for s in weight_layers(from_onnx)] == pytest.approx(
        [s.grad_norm for s in weight_layers(from_script)], rel=1e-4)
