"""Hostile ONNX networks built in memory with onnx.helper: shape and size bombs, nested subgraphs, unknown ops and
domains, opset and IR extremes, NaN weights, hostile external data."""

from __future__ import annotations

import numpy
import onnx
from onnx import TensorProto, helper, numpy_helper

FLOAT = TensorProto.FLOAT


def _model(nodes, inputs, outputs, initializers=(), opset: int = 17, ir: int = 8, domains=(), functions=()) -> bytes:
    graph = helper.make_graph(nodes, "hostile", inputs, outputs, list(initializers))
    imports = [helper.make_opsetid("", opset), *(helper.make_opsetid(domain, 1) for domain in domains)]
    model = helper.make_model(graph, opset_imports=imports, functions=list(functions))
    model.ir_version = ir
    return model.SerializeToString()


def _io(dims=("N", 4)):
    return ([helper.make_tensor_value_info("x", FLOAT, list(dims))],
            [helper.make_tensor_value_info("y", FLOAT, ["N", 3])])


def _weight(values=None) -> onnx.TensorProto:
    return numpy_helper.from_array(numpy.ones((4, 3), numpy.float32) if values is None else values, "w")


def _declared(name: str, dims) -> onnx.TensorProto:
    tensor = onnx.TensorProto(name=name, data_type=FLOAT)
    tensor.dims.extend(dims)
    return tensor


def plain_onnx(opset: int = 17, ir: int = 8) -> bytes:
    """x[N,4] @ w[4,3] -> y: the smallest network that audits."""
    inputs, outputs = _io()
    return _model([helper.make_node("MatMul", ["x", "w"], ["y"])], inputs, outputs, [_weight()], opset, ir)


def nan_weights() -> bytes:
    """The plain network with every weight NaN."""
    inputs, outputs = _io()
    weight = _weight(numpy.full((4, 3), numpy.nan, numpy.float32))
    return _model([helper.make_node("MatMul", ["x", "w"], ["y"])], inputs, outputs, [weight])


def inf_weights() -> bytes:
    """The plain network with every weight +inf."""
    inputs, outputs = _io()
    weight = _weight(numpy.full((4, 3), numpy.inf, numpy.float32))
    return _model([helper.make_node("MatMul", ["x", "w"], ["y"])], inputs, outputs, [weight])


def huge_input_dim() -> bytes:
    """An input whose fixed feature dimension is 2**40."""
    inputs, outputs = _io(("N", 2**40))
    big = _declared("w", (2**40, 3))
    return _model([helper.make_node("MatMul", ["x", "w"], ["y"])], inputs, outputs, [big])


def declared_initializer(dims=(1 << 20, 1 << 20)) -> bytes:
    """An initializer declaring `dims` with no data behind them."""
    inputs, outputs = _io()
    declared = _declared("w", dims)
    return _model([helper.make_node("MatMul", ["x", "w"], ["y"])], inputs, outputs, [declared])


def constant_of_shape_bomb(dims=(1 << 20, 1 << 20)) -> bytes:
    """x + ConstantOfShape(dims): a 4 TiB tensor asked for at run time."""
    shape = numpy_helper.from_array(numpy.array(dims, numpy.int64), "shape")
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["big"]), helper.make_node("MatMul", ["x", "w"], ["h"]),
             helper.make_node("Add", ["h", "big"], ["y"])]
    inputs, outputs = _io()
    return _model(nodes, inputs, outputs, [_weight(), shape])


def expand_bomb(dims=(1 << 16, 1 << 16, 3)) -> bytes:
    """Expand the output to `dims`."""
    shape = numpy_helper.from_array(numpy.array(dims, numpy.int64), "shape")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Expand", ["h", "shape"], ["y"])]
    inputs, outputs = _io()
    return _model(nodes, inputs, outputs, [_weight(), shape])


def unknown_op(domain: str = "", op: str = "Frobnicate") -> bytes:
    """The plain network followed by an operator no runtime knows."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node(op, ["h"], ["y"], domain=domain)]
    inputs, outputs = _io()
    return _model(nodes, inputs, outputs, [_weight()], domains=[domain] if domain else [])


def nested_if(depth: int) -> bytes:
    """An If whose branches nest `depth` Ifs deep, the innermost computing x @ w."""
    leaf = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y0"])], "leaf", [],
                             [helper.make_tensor_value_info("y0", FLOAT, None)])
    body = leaf
    for level in range(1, depth + 1):
        # Only the then-branch nests: nesting both would double the file at every level.
        node = helper.make_node("If", ["cond"], [f"y{level}"], then_branch=body, else_branch=leaf)
        body = helper.make_graph([node], f"level{level}", [], [helper.make_tensor_value_info(f"y{level}", FLOAT, None)])
    cond = numpy_helper.from_array(numpy.array(True), "cond")
    nodes = [*body.node, helper.make_node("Identity", [f"y{depth}"], ["y"])]
    inputs, outputs = _io()
    return _model(nodes, inputs, outputs, [_weight(), cond])


def endless_loop(trips: int = 2**62) -> bytes:
    """A Loop of `trips` iterations adding x @ w to itself: a time bomb in a graph."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Add", ["acc_in", "acc_in"], ["acc_out"])],
        "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
                 helper.make_tensor_value_info("acc_in", FLOAT, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", FLOAT, None)])
    limits = [numpy_helper.from_array(numpy.array(trips, numpy.int64), "trips"),
              numpy_helper.from_array(numpy.array(True), "go")]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]),
             helper.make_node("Loop", ["trips", "go", "h"], ["y"], body=body)]
    inputs, outputs = _io()
    return _model(nodes, inputs, outputs, [_weight(), *limits])


def recursive_function() -> bytes:
    """A local function that calls itself."""
    function = helper.make_function("evil", "Recurse", ["a"], ["b"], [helper.make_node("Recurse", ["a"], ["b"],
                                                                                        domain="evil")],
                                    [helper.make_opsetid("", 17), helper.make_opsetid("evil", 1)])
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Recurse", ["h"], ["y"], domain="evil")]
    inputs, outputs = _io()
    return _model(nodes, inputs, outputs, [_weight()], domains=["evil"], functions=[function])


def no_opset_import() -> bytes:
    """The plain network with its opset imports removed."""
    model = onnx.load_from_string(plain_onnx())
    del model.opset_import[:]
    return model.SerializeToString()


def external_weight(location: str, offset: int | None = None, length: int | None = None) -> bytes:
    """The plain network whose weight lives in an external file at `location`."""
    model = onnx.load_from_string(plain_onnx())
    weight = model.graph.initializer[0]
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    entries = {"location": location, "offset": offset, "length": length}
    for key, value in entries.items():
        if value is not None:
            weight.external_data.add(key=key, value=str(value))
    return model.SerializeToString()
