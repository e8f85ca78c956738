"""The ONNX conversion wrapper: our own ops against onnx's reference evaluator, graph rewrites, one copy of weights."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from gradaudit.errors import AuditError
from worker.engine.onnx.convert import Concat, convert_onnx
from worker.engine.onnx.ops import Gemm
from worker.engine.onnx.parity import max_abs_diff, parity_setup, tolerance_for

RNG = np.random.default_rng(0)


def _array(*shape) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _single_node(op: str, inputs: dict[str, np.ndarray], outputs: list[str], initializers=None, opset=21,
                 **attributes) -> onnx.ModelProto:
    node = helper.make_node(op, list(inputs) + list(initializers or {}), outputs, name=f"the_{op}", **attributes)
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape) for n, a in inputs.items()],
        [helper.make_tensor_value_info(n, TensorProto.UNDEFINED, None) for n in outputs if n],
        [numpy_helper.from_array(a, n) for n, a in (initializers or {}).items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _agrees_with_reference(proto: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> torch.Tensor:
    expected = ReferenceEvaluator(proto).run(None, feeds)
    module = convert_onnx(proto).module
    tensors = [torch.from_numpy(a).requires_grad_(a.dtype.kind == "f") for a in feeds.values()]
    outputs = module(*tensors)
    outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    for ours, reference in zip(outputs, expected):
        np.testing.assert_allclose(ours.detach().numpy(), reference, rtol=1e-4, atol=1e-5)
    sum(o.sum() for o in outputs if o.is_floating_point()).backward()
    assert all(t.grad is not None for t in tensors if t.is_floating_point())
    return outputs[0]


RUNTIME_WEIGHT_CASES = {
    "conv_asymmetric_pads": ("Conv", {"x": _array(1, 2, 7, 6), "w": _array(4, 2, 3, 3), "b": _array(4)},
                             {"strides": [2, 1], "pads": [1, 0, 2, 1]}),
    "conv_same_upper_grouped": ("Conv", {"x": _array(2, 4, 5, 5), "w": _array(4, 2, 2, 2)},
                                {"auto_pad": "SAME_UPPER", "group": 2}),
    "conv_transpose_output_shape": ("ConvTranspose", {"x": _array(1, 2, 3, 3), "w": _array(2, 3, 3, 3)},
                                    {"strides": [3, 2], "output_shape": [10, 8]}),
    "gemm_transposed_scaled": ("Gemm", {"a": _array(4, 3), "b": _array(5, 4), "c": _array(1, 5)},
                               {"transA": 1, "transB": 1, "alpha": 0.5, "beta": 2.0}),
    "average_pool_wide_pads": ("AveragePool", {"x": _array(1, 2, 6, 6)}, {"kernel_shape": [3, 3], "pads": [2, 2, 2, 2]}),
    "average_pool_dilated_ceil": ("AveragePool", {"x": _array(1, 1, 9, 9)},
                                  {"kernel_shape": [3, 3], "dilations": [2, 2], "strides": [2, 2], "ceil_mode": 1}),
    "lp_pool_wide_pads": ("LpPool", {"x": _array(1, 2, 5, 5)}, {"kernel_shape": [3, 3], "pads": [2, 2, 2, 2], "p": 3}),
}


@pytest.mark.parametrize("case", RUNTIME_WEIGHT_CASES, ids=list(RUNTIME_WEIGHT_CASES))
def test_weights_as_inputs_and_pools_torch_refuses_match_the_reference(case):
    op, feeds, attributes = RUNTIME_WEIGHT_CASES[case]
    _agrees_with_reference(_single_node(op, feeds, ["y"], **attributes), feeds)


def _recurrent_feeds(op: str, gates: int, directions: int = 1) -> dict[str, np.ndarray]:
    return {"x": _array(4, 2, 3), "w": _array(directions, gates * 5, 3), "r": _array(directions, gates * 5, 5),
            "b": _array(directions, 2 * gates * 5)}


@pytest.mark.parametrize("op,gates,attributes", [
    ("LSTM", 4, {"hidden_size": 5, "direction": "bidirectional"}),
    ("GRU", 3, {"hidden_size": 5, "linear_before_reset": 0}),
    ("GRU", 3, {"hidden_size": 5, "linear_before_reset": 1, "direction": "reverse"}),
    ("RNN", 1, {"hidden_size": 5, "activations": ["Affine"], "activation_alpha": [0.5], "activation_beta": [0.1],
             "layout": 1}),
])
def test_recurrent_ops_with_weights_as_inputs_match_the_reference(op, gates, attributes):
    feeds = _recurrent_feeds(op, gates, 2 if attributes.get("direction") == "bidirectional" else 1)
    outputs = ["y", "y_h", "y_c"] if op == "LSTM" else ["y", "y_h"]
    _agrees_with_reference(_single_node(op, feeds, outputs, **attributes), feeds)


def test_lstm_with_initial_state_initializers_uses_onnx2pytorch_and_matches():
    feeds = {"x": _array(4, 2, 3)}
    weights = {"w": _array(1, 20, 3), "r": _array(1, 20, 5), "b": _array(1, 40)}
    node = helper.make_node("LSTM", ["x", "w", "r", "b", "", "h0", "c0"], ["y", "y_h"], name="lstm", hidden_size=5)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(a, n) for n, a in
                               {**weights, "h0": _array(1, 2, 5), "c0": _array(1, 2, 5)}.items()])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    _agrees_with_reference(proto, feeds)
    converted = convert_onnx(proto)
    assert "h0" not in converted.promoted and "c0" not in converted.promoted  # states are not weights
    assert any(isinstance(m, torch.nn.LSTM) for m in converted.module.modules())


def test_constant_built_weights_are_folded_and_matmul_with_weight_first_is_right():
    shape = numpy_helper.from_array(np.array([4, 3], dtype=np.int64), "shape")
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["w"], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.5])),
             helper.make_node("MatMul", ["w", "x"], ["y"], name="matmul")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [shape])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    _agrees_with_reference(proto, {"x": _array(3, 2)})
    converted = convert_onnx(proto)
    assert [n.op_type for n in converted.nodes] == ["Identity", "MatMul"]
    assert [p.shape for p in converted.module.parameters()] == [(4, 3)]


def test_every_node_is_a_module_concat_included_and_weights_are_held_once():
    feeds = {"a": _array(2, 3), "b": _array(2, 4)}
    nodes = [helper.make_node("Concat", ["a", "b"], ["c"], name="cat", axis=1),
             helper.make_node("Gemm", ["c", "w", "bias"], ["y"], name="fc", transB=1)]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, a.shape) for n, a in feeds.items()],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(_array(5, 7), "w"), numpy_helper.from_array(_array(5), "bias")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    converted = convert_onnx(proto)
    modules = dict(converted.module.named_modules())
    assert [(n.name, n.op_type, n.depth) for n in converted.nodes] == [("cat", "Concat", 0), ("fc", "Gemm", 1)]
    assert isinstance(modules[converted.nodes[0].module_path], Concat)
    # Our weightless Gemm reads the weights as parameters: onnx2pytorch never copies them into a Linear.
    assert isinstance(modules[converted.nodes[1].module_path], Gemm)
    assert sorted(p.numel() for p in converted.module.parameters()) == [5, 35]
    assert list(converted.module.buffers()) == [] and len(converted.module.onnx_model.graph.initializer) == 0
    assert len(proto.graph.initializer) == 2  # the caller's proto is untouched
    _agrees_with_reference(proto, feeds)


def test_an_op_onnx2pytorch_would_only_guess_is_refused_by_name():
    proto = _single_node("Lgamma", {"x": _array(3)}, ["y"])  # not ONNX; the converter would guess torch.lgamma
    with pytest.raises(AuditError) as refused:
        convert_onnx(proto)
    assert refused.value.code == "unsupported_operator" and "'Lgamma'" in refused.value.detail


def test_parity_tolerance_scales_with_output_magnitude_and_refuses_above_it():
    assert tolerance_for(np.array([0.3, -0.2])) == pytest.approx(1e-4)
    assert tolerance_for(np.array([500.0, 1.0])) == pytest.approx(0.05)
    assert max_abs_diff(np.array([np.nan, np.inf, 1.0]), np.array([np.nan, np.inf, 1.5])) == 0.5
    assert max_abs_diff(np.array([np.nan]), np.array([0.0])) == np.inf
    reference = [np.array([[1.0, 2.0]], dtype=np.float32)]
    close = parity_setup(reference, None, 0, torch.tensor([[1.0, 2.00005]]))
    assert close["onnxruntime_tolerance"] == pytest.approx(2e-4) and close["onnxruntime_max_abs_diff"] < 1e-4
    with pytest.raises(AuditError) as mismatch:
        parity_setup(reference, None, 0, torch.tensor([[1.0, 2.01]]))
    assert mismatch.value.code == "conversion_mismatch"
    assert parity_setup(None, "no session", 0, torch.zeros(1))["onnxruntime_error"] == "no session"


def test_an_initializer_two_weight_nodes_share_becomes_a_parameter_each():
    # Exporters store equal constant weights once; as weights of two layers they must train apart.
    feeds = {"x": _array(2, 4)}
    nodes = [helper.make_node("Gemm", ["x", "w"], ["h"], name="fc1", transB=1),
             helper.make_node("Gemm", ["h", "w"], ["y"], name="fc2", transB=1)]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.full((4, 4), 0.5, dtype=np.float32), "w")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    converted = convert_onnx(proto)
    parameters = list(converted.module.parameters())
    assert len(parameters) == 2 and parameters[0].data_ptr() != parameters[1].data_ptr()
    _agrees_with_reference(proto, feeds)


def test_a_gemm_weight_stored_in_out_with_alpha_and_beta_is_held_as_linear_holds_it():
    feeds = {"x": _array(2, 6)}
    proto = _single_node("Gemm", feeds, ["y"], {"w": _array(6, 3), "b": _array(1)}, opset=13,
                         alpha=0.5, beta=2.0)  # B is (in, out): transB=0
    converted = convert_onnx(proto)
    parameters = dict(converted.module.named_parameters())
    shapes = sorted(tuple(p.shape) for p in parameters.values())
    assert shapes == [(1,), (3, 6)]  # (out, in) as in torch's Linear; the one-entry bias is a parameter too
    _agrees_with_reference(proto, feeds)


def test_an_old_gemm_with_the_broadcast_attribute_converts():
    feeds = {"x": _array(2, 4)}
    proto = _single_node("Gemm", feeds, ["y"], {"w": _array(3, 4), "b": _array(3)}, opset=6, transB=1,
                         broadcast=1)
    _agrees_with_reference(proto, feeds)


def test_a_weight_returned_as_a_graph_output_is_returned_and_is_a_parameter():
    weight = _array(4, 3)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="fc", transB=1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4]),
         helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 3])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(_array(4), "b")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    _agrees_with_reference(proto, {"x": _array(2, 3)})
    _, returned = convert_onnx(proto).module(torch.from_numpy(_array(2, 3)))
    assert returned.requires_grad and np.array_equal(returned.detach().numpy(), weight)
    assert [o.name for o in proto.graph.output] == ["y", "w"]  # the caller's names are untouched


@pytest.mark.parametrize("axis, indices", [(0, np.array([[0, 4], [-1, 2]])), (1, np.array(-2)), (-1, np.array([1]))])
def test_a_gathered_table_is_a_parameter_the_graph_never_holds(axis, indices):
    table = _array(5, 3) if axis == 0 else _array(2, 5, 3)
    proto = _single_node("Gather", {"i": indices.astype(np.int64)}, ["y"], initializers={"table": table}, opset=13,
                         axis=axis)
    proto.graph.node[0].input[:] = ["table", "i"]  # data first, then indices
    converted = convert_onnx(proto)
    assert [p.shape for p in converted.module.parameters()] == [table.shape]
    assert list(converted.module.buffers()) == [] and len(converted.module.onnx_model.graph.initializer) == 0
    expected = ReferenceEvaluator(proto).run(None, {"i": indices.astype(np.int64)})[0]
    output = converted.module(torch.from_numpy(indices.astype(np.int64)))
    np.testing.assert_array_equal(output.detach().numpy(), expected)
    output.sum().backward()
    assert next(converted.module.parameters()).grad.abs().sum() > 0


def test_normalizations_reading_one_scale_and_bias_get_a_parameter_each():
    # The dynamo exporter's optimizer stores a fresh network's equal LayerNorm ones and zeros once.
    nodes = [helper.make_node("LayerNormalization", ["x", "scale", "bias"], ["h"], name="norm1"),
             helper.make_node("LayerNormalization", ["h", "scale", "bias"], ["y"], name="norm2")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
        [numpy_helper.from_array(np.ones(4, np.float32), "scale"),
         numpy_helper.from_array(np.zeros(4, np.float32), "bias")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    _agrees_with_reference(proto, {"x": _array(2, 4)})
    module = convert_onnx(proto).module
    assert sum(p.numel() for p in module.parameters()) == 16


def test_two_lookups_in_one_table_stay_one_parameter_with_both_gradients():
    # Encoder and decoder sharing their embeddings: a tie the user made, kept.
    table = _array(10, 4)
    nodes = [helper.make_node("Gather", ["table", "a"], ["ea"], name="encoder_embedding"),
             helper.make_node("Gather", ["table", "b"], ["eb"], name="decoder_embedding"),
             helper.make_node("Add", ["ea", "eb"], ["y"], name="add")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(n, TensorProto.INT64, [3]) for n in ("a", "b")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4])], [numpy_helper.from_array(table, "table")])
    module = convert_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])).module
    module(torch.tensor([1, 2, 3]), torch.tensor([1, 5, 6])).sum().backward()
    (name, parameter), = module.named_parameters()
    assert parameter.grad[1].tolist() == [2.0] * 4 and parameter.grad[5].tolist() == [1.0] * 4
