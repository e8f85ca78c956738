"""Every layer output in audits of both formats: which layers are seen, and what their statistics say."""

from __future__ import annotations

import json
import math
from dataclasses import asdict

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradaudit.options import AuditOptions
from tests.support.networks import cnn_bn, export_onnx, mlp, save_torchscript, token_network
from worker.engine.audit import audit_network
from worker.engine.torchscript import taps as taps_module
from worker.engine.torchscript.tapping import TapsUnavailable


def kinds(result) -> list[str]:
    """The kinds of the layers whose output was observed in every batch."""
    return [s.kind for s in result.layers if len(s.batch_rows) == result.setup["batches"]]


def audit(path, **options):
    """audit_network on the CPU."""
    return audit_network(path, options=AuditOptions(**options), device="cpu")


def test_onnx_mlp_every_layer_seen(mlp_onnx):
    result = audit(mlp_onnx, input_shapes={"x": [8, 6]})
    assert kinds(result) == ["Gemm", "Relu", "Gemm", "Relu", "Gemm"]
    assert [s.parameters > 0 for s in result.layers] == [True, False, True, False, True]
    assert result.setup["layer_outputs"].startswith("forward hooks on 5 converted ONNX nodes")


@pytest.mark.parametrize("how", ["trace", "script"])
def test_torchscript_mlp_every_layer_seen_with_module_paths(tmp_path, how):
    path = save_torchscript(mlp(), tmp_path / "mlp.pt", torch.randn(2, 6) if how == "trace" else None)
    result = audit(path, input_shapes={"input": [8, 6]})
    assert [(s.name, s.kind) for s in result.layers] == [
        ("0", "Linear"), ("1", "ReLU"), ("2", "Linear"), ("3", "ReLU"), ("4", "Linear")]
    assert kinds(result) == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    assert "graph rewritten" in result.setup["layer_outputs"]


def test_cnn_with_batchnorm_every_layer_seen_in_both_formats(tmp_path):
    onnx_path = export_onnx(cnn_bn(), torch.randn(2, 3, 8, 8), tmp_path / "cnn.onnx", dynamic={0: "b"},
                            do_constant_folding=False, training=torch.onnx.TrainingMode.PRESERVE)
    script_path = save_torchscript(cnn_bn(), tmp_path / "cnn.pt")
    from_onnx = audit(onnx_path, batch_size=4)
    from_script = audit(script_path, input_shapes={"input": [4, 3, 8, 8]})
    assert kinds(from_script) == ["Conv2d", "BatchNorm2d", "ReLU", "Linear"]  # Flatten is layout-only
    assert "Relu" in kinds(from_onnx) and "Gemm" in kinds(from_onnx) and "Flatten" not in kinds(from_onnx)


def test_lstm_every_layer_seen_in_both_formats(tmp_path):
    onnx_path = export_onnx(token_network(), torch.randint(0, 50, (2, 5)), tmp_path / "tok.onnx", name="tokens",
                            dynamic={0: "b"})
    script_path = save_torchscript(token_network(), tmp_path / "tok.pt")
    from_onnx = audit(onnx_path, input_shapes={"tokens": [4, 5]})
    from_script = audit(script_path, input_shapes={"tokens": [4, 5]})
    assert kinds(from_onnx) == ["Gather", "LSTM", "Gemm"]  # the Concat of shapes never carries floats
    assert kinds(from_script) == ["Embedding", "LSTM", "Linear"]
    onnx_norms = [s.batch_rows[0]["output_grad_norm"] for s in from_onnx.layers]
    script_norms = [s.batch_rows[0]["output_grad_norm"] for s in from_script.layers]
    assert onnx_norms == pytest.approx(script_norms, rel=1e-4)


def test_onnx_and_torchscript_give_the_same_output_grads_per_layer(mlp_onnx, mlp_script):
    from_onnx = audit(mlp_onnx, input_shapes={"x": [8, 6]}, seed=3)
    from_script = audit(mlp_script, input_shapes={"input": [8, 6]}, seed=3)
    for onnx_layer, script_layer in zip(from_onnx.layers, from_script.layers, strict=True):
        for onnx_row, script_row in zip(onnx_layer.batch_rows, script_layer.batch_rows, strict=True):
            for key in ("output_grad_norm", "output_grad_max_abs", "activation_mean", "activation_zero_fraction"):
                assert onnx_row[key] == pytest.approx(script_row[key], rel=1e-4, abs=1e-7), (onnx_layer.name, key)


@pytest.mark.parametrize("artifact", ["mlp_onnx", "mlp_script"])
def test_last_layer_output_grad_is_the_hand_computed_loss_gradient(request, artifact, tmp_path):
    x = torch.randn(8, 6, generator=torch.Generator().manual_seed(5))
    np.savez(tmp_path / "batch.npz", **{"x" if artifact == "mlp_onnx" else "input": x.numpy()})
    result = audit_network(request.getfixturevalue(artifact), options=AuditOptions(seed=9), device="cpu",
                           inputs_path=tmp_path / "batch.npz")
    with torch.no_grad():
        logits = mlp()(x)
    labels = torch.randint(0, 4, (8,), generator=torch.Generator().manual_seed(9))
    by_hand = (logits.softmax(dim=1) - F.one_hot(labels, 4)) / 8  # d mean cross-entropy / d logits
    row = result.layers[-1].batch_rows[0]
    assert result.setup["loss"] == "cross_entropy" and result.setup["batches"] == 1
    assert row["output_grad_norm"] == pytest.approx(by_hand.norm().item(), rel=1e-5)
    assert row["output_grad_mean_abs"] == pytest.approx(by_hand.abs().mean().item(), rel=1e-5)
    assert row["output_grad_max_abs"] == pytest.approx(by_hand.abs().max().item(), rel=1e-5)
    assert (row["output_grad_zero_count"], row["output_grad_nonfinite"]) == (0, 0)
    assert row["activation_mean"] == pytest.approx(logits.mean().item(), rel=1e-5)


def saturating() -> nn.Sequential:
    """Huge weights before a Sigmoid, a strongly negative bias before a ReLU."""
    torch.manual_seed(0)
    network = nn.Sequential(nn.Linear(8, 16), nn.Sigmoid(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
    with torch.no_grad():
        network[0].weight.mul_(1000.0)
        network[2].bias.fill_(-1000.0)
    return network


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_saturated_sigmoid_and_dead_relu_show_in_activation_stats(tmp_path, fmt):
    if fmt == "onnx":
        path, name = export_onnx(saturating(), torch.randn(2, 8), tmp_path / "sat.onnx", dynamic={0: "b"}), "x"
    else:
        path, name = save_torchscript(saturating(), tmp_path / "sat.pt"), "input"
    result = audit(path, input_shapes={name: [32, 8]})
    sigmoid, relu = result.layers[1], result.layers[3]
    assert sigmoid.kind in ("Sigmoid",) and relu.kind in ("Relu", "ReLU")
    assert all(row["activation_saturated_fraction"] > 0.95 for row in sigmoid.batch_rows)
    assert all(row["activation_zero_fraction"] == 1.0 for row in relu.batch_rows)
    assert relu.batch_rows[0]["activation_saturated_fraction"] is None  # only Sigmoid/Tanh have a saturated region
    assert "5.99 for Sigmoid" in result.setup["saturation"]


def test_rewrite_that_cannot_be_built_falls_back_to_parameter_statistics(monkeypatch, mlp_script):
    def refuse(*_arguments):
        raise TapsUnavailable("forced for the test")

    monkeypatch.setattr(taps_module, "Tapping", refuse)
    result = audit(mlp_script, input_shapes={"input": [8, 6]})
    assert result.setup["layer_outputs"] == "unavailable: forced for the test"
    assert [s.name for s in result.layers] == ["0", "2", "4"] and all(not s.batch_rows for s in result.layers)
    assert all(s.grad_norm > 0 for s in result.layers)


def test_rewritten_graph_that_fails_to_run_falls_back_and_says_why(monkeypatch, mlp_script):
    def broken(_self, _paths):
        def run(*_inputs):
            raise RuntimeError("rewritten graph exploded")

        return run

    monkeypatch.setattr(taps_module.Tapping, "forward", broken)
    result = audit(mlp_script, input_shapes={"input": [8, 6]})
    assert result.setup["layer_outputs"].startswith("unavailable: the rewritten graph failed")
    assert "rewritten graph exploded" in result.setup["layer_outputs"]
    assert [s.name for s in result.layers] == ["0", "2", "4"] and all(s.grad_norm > 0 for s in result.layers)


def test_nonfinite_output_grads_are_counted_and_json_safe(tmp_path):
    from tests.support.networks import LogOfNegative

    path = save_torchscript(LogOfNegative(), tmp_path / "nan.pt")
    result = audit(path, input_shapes={"x": [4, 4]})
    json.dumps(asdict(result), allow_nan=False)
    first, last = (layer.batch_rows[0] for layer in result.layers)
    assert first["activation_mean"] is not None and last["activation_mean"] is None  # log of negatives: NaN
    assert (first["output_grad_nonfinite"], last["output_grad_nonfinite"]) == (32, 12)  # every entry NaN
    assert first["output_grad_norm"] is None  # a norm over NaN entries is reported as not finite


def test_output_grad_counts_are_consistent(mlp_onnx):
    result = audit(mlp_onnx, input_shapes={"x": [8, 6]})
    relu = result.layers[1]
    for row in relu.batch_rows:
        assert row["numel"] == 8 * 16
        assert row["output_grad_zero_fraction"] == pytest.approx(row["output_grad_zero_count"] / row["numel"])
        assert math.isfinite(row["activation_std"]) and row["activation_std"] >= 0


def test_the_report_built_from_an_engine_result_has_output_statistics(mlp_onnx):
    from gradaudit.report import build_report

    result = audit(mlp_onnx, input_shapes={"x": [8, 6]})
    report = build_report(audit_id=None, network=result.network, setup=result.setup,
                          layers=[layer.as_dict() for layer in result.layers], findings=result.findings,
                          verdict=result.verdict)
    json.dumps(report, allow_nan=False)
    relu = report["layers"][1]
    assert "batch_rows" not in relu and len(relu["output_grad"]["batches"]) == 3
    assert 0 < relu["activation"]["zero_fraction"] < 1 and relu["output_grad"]["norm"] > 0


class ScaledByWidth(nn.Module):
    """x @ W / sqrt(width), the width read from the input's shape at run time, as attention scales."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        width = torch.tensor(x.shape[-1], dtype=torch.float32)
        return torch.relu(self.fc(x)) / torch.sqrt(width)


def test_shape_arithmetic_is_not_a_layer(tmp_path):
    path = export_onnx(ScaledByWidth(), torch.randn(3, 6), tmp_path / "scaled.onnx", dynamic={0: "b", 1: "w"})
    graph_ops = [node.op_type for node in onnx.load(str(path)).graph.node]
    assert "Shape" in graph_ops and "Sqrt" in graph_ops  # the scale is computed when the network runs
    result = audit(path, input_shapes={"x": [8, 6]})
    assert [layer.kind for layer in result.layers] == ["Gemm", "Relu", "Div"]
    assert "shape arithmetic skipped" in result.setup["layer_outputs"]


def test_a_node_computing_on_a_parameter_from_shapes_alone_is_a_layer(tmp_path):
    # Learned position embeddings looked up at Range(Shape(tokens)), then scaled: no input's values, but a
    # parameter's, and the gradient flows through them.
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Shape", ["tokens"], ["shape"], name="shape"),
             helper.make_node("Gather", ["shape", "one"], ["length"], name="length", axis=0),
             helper.make_node("Range", ["zero", "length", "one"], ["positions"], name="range"),
             helper.make_node("Gather", ["position_table", "positions"], ["at"], name="position_embedding"),
             helper.make_node("Mul", ["at", "two"], ["scaled"], name="scale"),
             helper.make_node("Gather", ["token_table", "tokens"], ["te"], name="token_embedding"),
             helper.make_node("Add", ["te", "scaled"], ["y"], name="add")]
    initializers = [numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "position_table"),
                    numpy_helper.from_array(rng.standard_normal((20, 4)).astype(np.float32), "token_table"),
                    numpy_helper.from_array(np.array(2.0, np.float32), "two"),
                    numpy_helper.from_array(np.array(1), "one"), numpy_helper.from_array(np.array(0), "zero")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("tokens", TensorProto.INT64, [2, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5, 4])], initializers)
    path = tmp_path / "positions.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    result = audit(path)
    assert [layer.name for layer in result.layers] == ["position_embedding", "scale", "token_embedding", "add"]
