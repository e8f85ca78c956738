"""An ONNX graph's declared sizes against the memory budget, before any weight is read or node run.

Initializers are judged by their declared dims, and every other value by the shape ONNX's static shape
inference gives it: with the small integer constants kept in the graph (shapes, repeats, sizes, scales), it
computes the outputs of Expand, Tile, ConstantOfShape, Resize, Reshape, ... where their shape inputs are
constants, so a few hundred bytes asking for 10^11 elements are refused before anything allocates them.
"""

from __future__ import annotations

import logging

import onnx
from onnx import TensorProto, numpy_helper

from worker.engine.onnx.external_data import external_tensors
from worker.engine.sizes import declared_bytes, refuse_past_budget, refuse_total_past_budget

log = logging.getLogger(__name__)

# Integer constants up to this many elements stay in the graph shape inference reads: shapes and the like.
_SHAPE_CONSTANT_ELEMENTS = 64
_INTEGER_TYPES = (TensorProto.INT64, TensorProto.INT32)
# The input holding each op's target: Expand's shape, Tile's repeats, Resize's sizes.
_TARGET_INPUT = {"Expand": 1, "Tile": 1, "Resize": 3}


def refuse_oversized(proto: onnx.ModelProto, budget: int) -> None:
    """AuditError("input_too_large") for an initializer, their total, or an inferred value past the budget."""
    graph = proto.graph
    for tensor in graph.initializer:
        refuse_past_budget(f"initializer {tensor.name!r}", tensor.dims, _itemsize(tensor.data_type), budget)
    refuse_total_past_budget("the initializers together", initializer_bytes(graph), budget)
    inferred = _inferred_values(proto)
    for value in inferred:
        shape = _static_shape(value)
        if shape is not None:
            itemsize = _itemsize(value.type.tensor_type.elem_type)
            refuse_past_budget(f"the graph's value {value.name!r}", shape, itemsize, budget)
    _refuse_oversized_targets(graph, inferred, budget)


def initializer_bytes(graph: onnx.GraphProto) -> int:
    """The initializers' size as their shapes and types declare it, without reading their bytes."""
    return sum(declared_bytes(tensor.dims, _itemsize(tensor.data_type)) for tensor in graph.initializer)


def _refuse_oversized_targets(graph: onnx.GraphProto, inferred: list[onnx.ValueInfoProto], budget: int) -> None:
    """Expand, Tile and Resize given a constant target: its elements' product bounds the output from below even
    where inference gives up (a symbolic batch broadcast against 65536 is an unknown dimension, counted as 1)."""
    constants = {t.name: t for t in graph.initializer if _is_shape_constant(t)}
    types = {value.name: value.type.tensor_type.elem_type for value in [*graph.input, *inferred]}
    for node in graph.node:
        at = _TARGET_INPUT.get(node.op_type)
        if at is None or len(node.input) <= at or node.input[at] not in constants:
            continue
        target = [int(v) for v in numpy_helper.to_array(constants[node.input[at]]).ravel()]
        itemsize = _itemsize(types.get(node.input[0], TensorProto.UINT8))
        refuse_past_budget(f"the output of {node.op_type} {node.name or node.output[0]!r}", target, itemsize, budget)


def _inferred_values(proto: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    try:
        inferred = onnx.shape_inference.infer_shapes(with_shape_constants_only(proto), data_prop=True)
    except Exception:  # inference is a best effort: the converter reports what it cannot take
        log.info("ONNX shape inference failed; only declared sizes are checked", exc_info=True)
        return []
    return [*inferred.graph.value_info, *inferred.graph.output]


def with_shape_constants_only(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The graph with its small integer initializers kept and every other one declared as an input: inference
    needs the constants' values, never the weights'."""
    graph = proto.graph
    external = {tensor.name for tensor in external_tensors(graph)}
    kept = [t for t in graph.initializer if _is_shape_constant(t) and t.name not in external]
    kept_names = {t.name for t in kept}
    declared = {value.name for value in graph.input}
    weights = [onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
               for t in graph.initializer if t.name not in kept_names and t.name not in declared]
    inputs = [value for value in graph.input if value.name not in kept_names]
    skeleton = onnx.helper.make_graph(list(graph.node), graph.name, inputs + weights, list(graph.output),
                                      initializer=kept, value_info=list(graph.value_info))
    return onnx.helper.make_model(skeleton, ir_version=proto.ir_version, opset_imports=list(proto.opset_import),
                                  functions=list(proto.functions))


def _is_shape_constant(tensor: TensorProto) -> bool:
    return tensor.data_type in _INTEGER_TYPES and declared_bytes(tensor.dims, 1) <= _SHAPE_CONSTANT_ELEMENTS


def _static_shape(value: onnx.ValueInfoProto) -> list[int] | None:
    tensor_type = value.type.tensor_type
    if not value.type.HasField("tensor_type") or not tensor_type.HasField("shape"):
        return None
    # A symbolic dimension counts as 1: the known ones alone bound the size from below.
    return [dim.dim_value if dim.HasField("dim_value") and dim.dim_value >= 0 else 1 for dim in tensor_type.shape.dim]


def _itemsize(data_type: int) -> int:
    try:
        return max(onnx.helper.tensor_dtype_to_np_dtype(data_type).itemsize, 1)
    except (KeyError, TypeError, ValueError):
        return 1
