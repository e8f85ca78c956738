"""Each recommendation's graph edit on tiny ONNX networks (worker/remedies/edits.py): the edit happens on the named
layers, nothing else changes, the graph still passes onnx.checker and runs in onnxruntime; and the networks where
an edit cannot be made say why."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from tests.support.networks import export_onnx
from worker.engine.batches import ProbeBatches
from worker.remedies.base import BaseNetwork
from worker.remedies.edits import EditInputs, apply_edit
from worker.remedies.graph import Graph, NotApplicable

WIDTH = 32


def _graph(network: nn.Module, tmp_path, example: torch.Tensor | None = None) -> Graph:
    example = torch.randn(4, WIDTH) if example is None else example
    path = export_onnx(network.eval(), example, tmp_path / "net.onnx", dynamic={0: "n"})
    return Graph(onnx.load(path))


def _sigmoid_mlp(depth: int = 3, last: int = 5) -> nn.Sequential:
    torch.manual_seed(0)
    blocks = [m for _ in range(depth) for m in (nn.Linear(WIDTH, WIDTH), nn.Sigmoid())]
    return nn.Sequential(*blocks, nn.Linear(WIDTH, last))


def _initializers(graph: Graph) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t).copy() for t in graph.graph.initializer}


def _ops(graph: Graph) -> list[str]:
    return [node.op_type for node in graph.graph.node]


def _runs(graph: Graph, batch: np.ndarray) -> np.ndarray:
    onnx.checker.check_model(graph.proto)
    session = onnxruntime.InferenceSession(graph.proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": batch})[0]


BATCHES = ProbeBatches([{"x": torch.randn(16, WIDTH, generator=torch.Generator().manual_seed(s))} for s in range(3)],
                       [0, 1, 2], {})


def _edit(graph: Graph, code: str, layers: list[str], **edit) -> str:
    recommendation = {"code": code, "text": "", "layers": layers, **({"edit": edit} if edit else {})}
    calibrate = BaseNetwork(onnx.ModelProto(), "test", BATCHES).calibrate
    return apply_edit(graph, recommendation, EditInputs(seed=0, calibrate=calibrate))


def test_reinit_he_changes_only_the_named_layers_to_he_scale(tmp_path):
    graph = _graph(_sigmoid_mlp(), tmp_path)
    before = _initializers(graph)
    patch = _edit(graph, "reinit_he", ["/0/Gemm"])
    after = _initializers(graph)
    changed = [name for name in before if not np.array_equal(before[name], after[name])]
    assert changed == ["0.weight"]
    assert after["0.weight"].std() == pytest.approx(np.sqrt(2 / WIDTH), rel=0.1)
    assert "kaiming_normal_" in patch and "'/0/Gemm'" in patch


def test_reinit_follows_the_per_layer_inits_it_is_given(tmp_path):
    graph = _graph(_sigmoid_mlp(), tmp_path)
    _edit(graph, "reinit_xavier", ["/0/Gemm", "/6/Gemm"], inits={"/0/Gemm": "tanh", "/6/Gemm": "linear"})
    after = _initializers(graph)
    assert after["0.weight"].std() == pytest.approx(np.sqrt(2 / (WIDTH + WIDTH)), rel=0.1)
    classifier = after["6.weight"]  # orthogonal rows: W W^T = I for the 5 x 32 classifier
    np.testing.assert_allclose(classifier @ classifier.T, np.eye(5), atol=1e-5)


def test_use_relu_swaps_the_activation_after_each_named_layer_and_nothing_else(tmp_path):
    graph = _graph(_sigmoid_mlp(), tmp_path)
    before = _initializers(graph)
    _edit(graph, "use_relu", ["/0/Gemm", "/2/Gemm"])
    assert _ops(graph) == ["Gemm", "Relu", "Gemm", "Relu", "Gemm", "Sigmoid", "Gemm"]
    after = _initializers(graph)
    assert [n for n in before if not np.array_equal(before[n], after[n])] == ["0.weight", "2.weight"]
    assert _runs(graph, np.random.randn(4, WIDTH).astype(np.float32)).shape == (4, 5)


def test_use_relu_needs_a_squashing_activation_after_the_layer(tmp_path):
    torch.manual_seed(0)
    graph = _graph(nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.ReLU(), nn.Linear(WIDTH, 5)), tmp_path)
    with pytest.raises(NotApplicable, match="no sigmoid or tanh follows"):
        _edit(graph, "use_relu", ["/0/Gemm"])


def test_use_leaky_relu_and_reset_biases(tmp_path):
    torch.manual_seed(0)
    graph = _graph(nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.ReLU(), nn.Linear(WIDTH, 5)), tmp_path)
    _edit(graph, "use_leaky_relu", ["/1/Relu"])
    _edit(graph, "reset_biases", ["/0/Gemm"])
    leaky = graph.node("/1/Relu")
    assert leaky.op_type == "LeakyRelu" and onnx.helper.get_attribute_value(leaky.attribute[0]) == pytest.approx(0.01)
    after = _initializers(graph)
    assert not after["0.bias"].any() and after["2.bias"].any()
    with pytest.raises(NotApplicable, match="not a ReLU"):
        _edit(graph, "use_leaky_relu", ["/0/Gemm"])


def test_add_batch_norm_goes_before_each_activation_calibrated_on_the_probe_batches(tmp_path):
    graph = _graph(_sigmoid_mlp(), tmp_path)
    _edit(graph, "add_batch_norm", ["/0/Gemm", "/2/Gemm"])
    assert _ops(graph) == ["Gemm", "BatchNormalization", "Sigmoid", "Gemm", "BatchNormalization", "Sigmoid",
                           "Gemm", "Sigmoid", "Gemm"]
    # Calibrated as training calibrates: running mean and variance are the averages over the probe batches of each
    # batch's mean and unbiased variance. Exact for the first BatchNorm, whose input nothing before it changes.
    first, second = [node for node in graph.graph.node if node.op_type == "BatchNormalization"]
    fed = _per_batch(graph.proto, graph.node("/0/Gemm").output[0])
    np.testing.assert_allclose(numpy_helper.to_array(graph.initializer(first.input[3])),
                               np.mean([batch.mean(axis=0) for batch in fed], axis=0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(numpy_helper.to_array(graph.initializer(first.input[4])),
                               np.mean([batch.var(axis=0, ddof=1) for batch in fed], axis=0), rtol=1e-4)
    # The second saw its input normalised with each batch's own statistics while it was calibrated; in eval form
    # on the same batches its output is still about standard.
    normalised = np.concatenate(_per_batch(graph.proto, second.output[0]))
    assert np.abs(normalised.mean(axis=0)).max() < 0.2 and 0.7 < normalised.var(axis=0).mean() < 1.3


def _per_batch(proto: onnx.ModelProto, value: str) -> list[np.ndarray]:
    """value on each probe batch, by onnxruntime, the graph in eval form."""
    probed = onnx.ModelProto()
    probed.CopyFrom(proto)
    probed.graph.output.append(onnx.helper.make_tensor_value_info(value, onnx.TensorProto.FLOAT, None))
    session = onnxruntime.InferenceSession(probed.SerializeToString(), providers=["CPUExecutionProvider"])
    return [session.run([value], {"x": batch["x"].numpy()})[0] for batch in BATCHES.inputs]


def test_add_batch_norm_refuses_a_sequence_output(tmp_path):
    torch.manual_seed(0)
    network = nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.Sigmoid(), nn.Linear(WIDTH, 5))
    graph = _graph(network, tmp_path, example=torch.randn(2, 7, WIDTH))
    weight = next(node.name for node in graph.graph.node if node.op_type == "MatMul")
    with pytest.raises(NotApplicable, match="LayerNorm"):
        _edit(graph, "add_batch_norm", [weight])


def test_add_skip_connections_wraps_shape_preserving_blocks_only(tmp_path):
    torch.manual_seed(0)
    network = nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.Tanh(), nn.Linear(WIDTH, 16), nn.Tanh(), nn.Linear(16, 5))
    graph = _graph(network, tmp_path)
    patch = _edit(graph, "add_skip_connections", ["/0/Gemm", "/2/Gemm"])
    assert _ops(graph) == ["Gemm", "Tanh", "Add", "Gemm", "Tanh", "Gemm"]
    add = graph.graph.node[2]
    assert list(add.input) == ["x", graph.graph.node[1].output[0]]  # x + f(x)
    assert "1 block(s)" in patch
    _runs(graph, np.random.randn(4, WIDTH).astype(np.float32))
    with pytest.raises(NotApplicable, match="input's shape"):
        _edit(graph, "add_skip_connections", ["/2/Gemm"])


def test_consecutive_residuals_each_add_their_own_block_input(tmp_path):
    graph = _graph(_sigmoid_mlp(), tmp_path)
    _edit(graph, "add_skip_connections", ["/0/Gemm", "/2/Gemm"])
    adds = [node for node in graph.graph.node if node.op_type == "Add"]
    second_gemm = graph.node("/2/Gemm")
    assert adds[1].input[0] == second_gemm.input[0] == adds[0].output[0]


def test_reduce_depth_bypasses_every_second_block(tmp_path):
    graph = _graph(_sigmoid_mlp(depth=4), tmp_path)
    _edit(graph, "reduce_depth", ["/0/Gemm", "/2/Gemm", "/4/Gemm", "/6/Gemm", "/8/Gemm"])
    assert _ops(graph).count("Gemm") == 3 and [t.name for t in graph.graph.initializer if "2." in t.name] == []
    assert _runs(graph, np.random.randn(4, WIDTH).astype(np.float32)).shape == (4, 5)
    small = _graph(_sigmoid_mlp(depth=1), tmp_path)
    with pytest.raises(NotApplicable, match="fewer than two"):
        _edit(small, "reduce_depth", ["/0/Gemm", "/2/Gemm"])


class _Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner, self.outer = nn.Linear(WIDTH, WIDTH), nn.Linear(WIDTH, WIDTH)

    def forward(self, x):
        return x + self.outer(torch.relu(self.inner(x)))


def test_scale_residual_branches_is_fixup(tmp_path):
    torch.manual_seed(0)
    graph = _graph(nn.Sequential(_Residual(), _Residual(), nn.Linear(WIDTH, 5)), tmp_path)
    before = _initializers(graph)
    patch = _edit(graph, "scale_residual_branches", [])
    after = _initializers(graph)
    assert not after["0.outer.weight"].any() and not after["1.outer.weight"].any()
    np.testing.assert_allclose(after["0.inner.weight"], before["0.inner.weight"] * 2 ** -0.5, rtol=1e-6)
    np.testing.assert_array_equal(after["2.weight"], before["2.weight"])
    assert "Fixup" in patch
    plain = _graph(_sigmoid_mlp(), tmp_path)
    with pytest.raises(NotApplicable, match="no residual addition"):
        _edit(plain, "scale_residual_branches", [])


class _Recurrence(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn, self.out = nn.RNN(8, 16, batch_first=True), nn.Linear(16, 3)

    def forward(self, x):
        return self.out(self.rnn(x)[0][:, -1])


def test_a_plain_rnn_becomes_an_lstm_of_the_same_sizes(tmp_path):
    torch.manual_seed(0)
    graph = _graph(_Recurrence(), tmp_path, example=torch.randn(2, 10, 8))
    rnn = next(node.name for node in graph.graph.node if node.op_type == "RNN")
    _edit(graph, "use_lstm_or_gru", [rnn])
    lstm = graph.node(rnn)
    assert lstm.op_type == "LSTM" and "RNN" not in _ops(graph)
    bias = numpy_helper.to_array(graph.initializer(lstm.input[3]))
    assert bias.shape == (1, 8 * 16) and (bias[0, 32:48] == 1).all() and bias[0, :32].sum() == 0
    session = onnxruntime.InferenceSession(graph.proto.SerializeToString(), providers=["CPUExecutionProvider"])
    assert session.run(None, {"x": np.random.randn(2, 10, 8).astype(np.float32)})[0].shape == (2, 3)


def test_orthogonal_recurrent_weights(tmp_path):
    torch.manual_seed(0)
    graph = _graph(_Recurrence(), tmp_path, example=torch.randn(2, 10, 8))
    rnn = next(node for node in graph.graph.node if node.op_type == "RNN")
    _edit(graph, "reinit_orthogonal", [rnn.name], inits={rnn.name: "recurrent"})
    recurrent = numpy_helper.to_array(graph.initializer(rnn.input[2]))[0]
    np.testing.assert_allclose(recurrent @ recurrent.T, np.eye(16), atol=1e-5)
    with pytest.raises(NotApplicable, match="not a plain RNN"):
        _edit(graph, "use_lstm_or_gru", ["/out/Gemm"])


def test_a_code_without_an_edit_and_a_missing_layer_say_why(tmp_path):
    graph = _graph(_sigmoid_mlp(), tmp_path)
    with pytest.raises(NotApplicable, match="no automatic edit"):
        _edit(graph, "add_layer_norm", ["/0/Gemm"])
    with pytest.raises(NotApplicable, match="no node named"):
        _edit(graph, "reinit_he", ["/nope/Gemm"])
    with pytest.raises(NotApplicable, match="names no layer"):
        _edit(graph, "reinit_he", [])


def test_a_layer_fed_a_shared_initializer_through_identity_gets_its_own_copy(tmp_path):
    torch.manual_seed(0)
    network = nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.ReLU(), nn.Linear(WIDTH, WIDTH), nn.ReLU(),
                            nn.Linear(WIDTH, 5))
    with torch.no_grad():
        for layer in (network[0], network[2]):
            layer.weight.zero_()
            layer.bias.fill_(-3.0)
    graph = _graph(network, tmp_path)
    assert "Identity" in _ops(graph)  # the exporter stored the equal tensors once
    _edit(graph, "reinit_he", ["/2/Gemm"])
    _edit(graph, "reset_biases", ["/2/Gemm"])
    first, second = graph.node("/0/Gemm"), graph.node("/2/Gemm")
    weights = {name: numpy_helper.to_array(graph.initializer(name)) for name in (second.input[1], second.input[2])}
    assert weights[second.input[1]].std() > 0 and not weights[second.input[2]].any()
    batch = np.random.randn(4, WIDTH).astype(np.float32)
    _runs(graph, batch)
    session = onnxruntime.InferenceSession(graph.proto.SerializeToString(), providers=["CPUExecutionProvider"])
    probe = onnx.ModelProto()
    probe.CopyFrom(graph.proto)
    probe.graph.output.append(onnx.helper.make_tensor_value_info(first.output[0], onnx.TensorProto.FLOAT, None))
    session = onnxruntime.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(session.run([first.output[0]], {"x": batch})[0], -3.0)  # the first: unchanged


class _Unguarded(nn.Module):
    def forward(self, x):
        return torch.log(x) + torch.sqrt(x - 1.0) + torch.exp(x * 100.0) + torch.log(-x)


def test_guard_nonfinite_clamps_every_log_sqrt_and_exp(tmp_path):
    graph = _graph(_Unguarded(), tmp_path)
    patch = _edit(graph, "guard_nonfinite", [])
    assert _ops(graph).count("Max") == 3 and _ops(graph).count("Min") == 1
    for node in graph.graph.node:
        if node.op_type in ("Log", "Sqrt", "Exp"):
            assert graph.producer(node.input[0]).op_type in ("Max", "Min")
    assert np.isfinite(_runs(graph, np.random.randn(4, WIDTH).astype(np.float32))).all()
    assert "2 log at least 1e-12" in patch
    with pytest.raises(NotApplicable, match="no log, sqrt or exp"):
        _edit(_graph(_sigmoid_mlp(), tmp_path), "guard_nonfinite", [])
