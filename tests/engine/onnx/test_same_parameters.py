"""worker.engine.onnx.same_parameters: copies of one parameter (per call, transposed) are one; equal constant
tensors are one only within the module that reads them."""

from __future__ import annotations

import onnx
import torch

from worker.engine.network import Layer
from worker.engine.onnx.same_parameters import node_scopes, same_parameters


def _node(name: str, scopes: str | None = None) -> onnx.NodeProto:
    node = onnx.helper.make_node("Identity", ["x"], [name + "_out"], name=name)
    if scopes is not None:
        node.metadata_props.add(key="pkg.torch.onnx.name_scopes", value=scopes)
    return node


def _graph(*nodes: onnx.NodeProto) -> onnx.GraphProto:
    return onnx.helper.make_graph(list(nodes), "g", [], [])


def _module(**tensors: torch.Tensor) -> torch.nn.Module:
    module = torch.nn.Module()
    for name, tensor in tensors.items():
        module.register_parameter(name, torch.nn.Parameter(tensor))
    return module


def test_scopes_come_from_the_dynamo_record_or_the_legacy_name_without_call_suffixes():
    scopes = node_scopes(_graph(_node("/encoder/shared/up_3/MatMul"), _node("/head/Gemm"),
                                _node("node_MatMul_5", "['', 'encoder', 'encoder.shared.up', 'linear_2']"),
                                _node("odd")))
    assert scopes == {"/encoder/shared/up_3/MatMul": "encoder/shared/up", "/head/Gemm": "head",
                      "node_MatMul_5": "encoder.shared.up", "odd": "odd"}


def test_a_transposed_copy_read_by_the_same_module_is_the_same_parameter():
    weight = torch.randn(4, 6)
    module = _module(a=weight, b=weight.t().contiguous(), c=torch.randn(4, 6))
    layers = [Layer("/x/MatMul", "MatMul", 0, ["a"]), Layer("/x_1/MatMul", "MatMul", 1, ["b"]),
              Layer("/y/MatMul", "MatMul", 2, ["c"])]
    assert same_parameters(module, layers, _graph(*(_node(layer.name) for layer in layers))) == {"b": "a"}


def test_equal_values_in_two_modules_are_two_parameters_unless_one_is_an_embedding_table():
    weight, table = torch.randn(10, 4), torch.randn(10, 4)  # nn.TransformerEncoder deep-copies its layer
    module = _module(layer0=weight.clone(), layer1=weight.clone(), table=table, decoder=table.t().contiguous())
    layers = [Layer("/layers.0/MatMul", "MatMul", 0, ["layer0"]), Layer("/layers.1/MatMul", "MatMul", 1, ["layer1"]),
              Layer("/embedding/Gather", "Gather", 2, ["table"]), Layer("/decoder/MatMul", "MatMul", 3, ["decoder"])]
    same = same_parameters(module, layers, _graph(*(_node(layer.name) for layer in layers)))
    assert same == {"decoder": "table"}


def test_equal_constants_are_one_parameter_only_within_one_module():
    ones = torch.ones(8)
    module = _module(first=ones.clone(), call=ones.clone(), other=ones.clone())
    layers = [Layer("/enc/norm/LayerNormalization", "LayerNormalization", 0, ["first"]),
              Layer("/enc/norm_1/LayerNormalization", "LayerNormalization", 1, ["call"]),
              Layer("/norm/LayerNormalization", "LayerNormalization", 2, ["other"])]
    graph = _graph(*(_node(layer.name) for layer in layers))
    assert same_parameters(module, layers, graph) == {"call": "first"}
