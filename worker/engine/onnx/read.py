"""Read an ONNX artifact: validate it, convert it to torch, and map torch parameters back to ONNX nodes."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from gradaudit.errors import AuditError, one_line
from worker.engine.network import InputSpec, Layer, LoadedNetwork
from worker.engine.normalization import BatchNormLayer, has_initial_statistics
from worker.engine.onnx.activations import composed_activations, scalar_constants
from worker.engine.onnx.convert import (
    ConvertedNetwork,
    batch_norm_module,
    convert_onnx,
    normalise_nodes_with_batch_statistics,
)
from worker.engine.onnx.external_data import external_tensors, locate_external_data
from worker.engine.onnx.folded import folded_setup, restore_folded_batch_norms
from worker.engine.onnx.unrolled import recurrence_roles, unrolled_recurrences
from worker.engine.onnx.prepare import refuse_unsupported
from worker.engine.onnx.same_parameters import same_parameters
from worker.engine.onnx.sizes import refuse_oversized
from worker.engine.onnx.structure import structure
from worker.engine.onnx.token_ids import vocabulary_size
from worker.engine.onnx.vocabulary import OP_COUNT_NAMES, ROLES
from worker.engine.onnx.wire import read_without_weights
from worker.engine.sizes import memory_budget


@dataclass
class OnnxGraph:
    """A read and checked ONNX file, its weights not yet read: the graph, its inputs, what the report says of it."""

    proto: onnx.ModelProto | None  # None once converted
    path: Path | None  # None for a graph built in memory
    inputs: list[InputSpec]
    op_counts: dict[str, int]
    output_names: list[str]
    opset: int | None
    restored_batch_norms: list[str]


def read_onnx(path: Path, external_data_dir: Path | None = None) -> OnnxGraph:
    """Read and validate an ONNX artifact's graph; its weights stay in their files until convert_graph."""
    proto = read_without_weights(path)
    _check(proto)  # before locating: the checker refuses the absolute paths external references get there
    _refuse_unknown_opset(proto)
    locate_external_data(proto, external_data_dir, own_file=path)
    return _screened(proto, Path(path))


def graph_in_memory(proto: onnx.ModelProto) -> OnnxGraph:
    """A graph held in memory with all its weights (a patched copy of an upload), checked as a read file is."""
    _check(proto)
    _refuse_unknown_opset(proto)
    return _screened(proto, None)


def _screened(proto: onnx.ModelProto, path: Path | None) -> OnnxGraph:
    refuse_unsupported(proto.graph, computing_only=True)
    refuse_oversized(proto, memory_budget())  # before a weight is read or a node run
    inputs, op_counts = _input_specs(proto.graph), _op_counts(proto.graph)  # as uploaded
    return OnnxGraph(proto, path, inputs, op_counts, [o.name for o in proto.graph.output], _opset(proto),
                     restore_folded_batch_norms(proto.graph))


def convert_graph(graph: OnnxGraph) -> LoadedNetwork:
    """The torch network for a read graph. Takes the graph's proto: conversion rewrites it rather than a copy."""
    proto, graph.proto = graph.proto, None
    constants = scalar_constants(proto.graph)
    converted = convert_onnx(proto, take=True)
    del proto  # from here on the module holds the only copy of the weights
    layers = _layers(converted)
    converted_graph = converted.module.onnx_model.graph
    unrolled = unrolled_recurrences(converted_graph)
    return LoadedNetwork(
        module=converted.module,
        format="onnx",
        layers=layers,
        same_parameters=same_parameters(converted.module, layers, converted_graph),
        notes={"opset": graph.opset, "conversion_warnings": converted.warnings,
               **folded_setup(graph.restored_batch_norms)},
        nodes=converted.nodes,
        inputs=graph.inputs,
        op_counts=graph.op_counts,
        output_names=graph.output_names,
        roles=ROLES,
        layer_roles={**composed_activations(converted_graph, constants), **recurrence_roles(unrolled)},
        structure=structure(converted_graph),
        batch_norms=_batch_norms(converted),
        unrolled_steps={path: recurrence.steps for path, recurrence in unrolled.items() if recurrence.steps},
    )


def _batch_norms(converted: ConvertedNetwork) -> list[BatchNormLayer]:
    layers = []
    for node in converted.module.onnx_model.graph.node:
        if node.op_type == "BatchNormalization":
            norm = batch_norm_module(converted.module, node)
            layers.append(BatchNormLayer(node.name, has_initial_statistics(norm.running_mean, norm.running_var),
                                         node.name in converted.batch_statistics))
    return layers


def use_batch_statistics(network: LoadedNetwork, names: list[str]) -> None:
    """Have the named BatchNormalization nodes normalise with batch statistics."""
    normalise_nodes_with_batch_statistics(network.module, names)


def _op_counts(graph: onnx.GraphProto) -> dict[str, int]:
    return dict(Counter(OP_COUNT_NAMES[n.op_type] for n in graph.node if n.op_type in OP_COUNT_NAMES))


def _check(proto: onnx.ModelProto) -> None:
    try:
        onnx.checker.check_model(skeleton(proto))
    except Exception as exc:
        raise AuditError("invalid_onnx", one_line(exc, 300)) from None


def _refuse_unknown_opset(proto: onnx.ModelProto) -> None:
    """An opset past the newest onnx knows is one whose operators' meaning we cannot know (the checker lets it
    through): converting it by the meaning of today's operators would audit a guess."""
    declared, newest = _opset(proto), onnx.defs.onnx_opset_version()
    if declared is not None and declared > newest:
        raise AuditError("unsupported_opset", f"the network declares ai.onnx opset {declared}; the newest this "
                                              f"server knows is {newest}: export it at opset {newest} or lower")


def skeleton(proto: onnx.ModelProto) -> onnx.ModelProto:
    """proto without its weights: each initializer declared as a graph input of the same type and shape, and
    tensors elsewhere (Constant attributes, subgraph initializers) that live in other files left empty.

    The checker reads the graph, not the weights; handed the whole proto it serializes it and parses it
    again in C++, two more copies of the weights at once (docs/engine.md has the peak this cost).
    It would also look for external files relative to the working directory, or refuse absolute paths;
    external_data.py confines and reads them instead.
    """
    graph = proto.graph
    declared = {value.name for value in graph.input}
    weights = [onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
               for t in graph.initializer if t.name not in declared]
    checked = onnx.helper.make_graph(list(graph.node), graph.name, list(graph.input) + weights, list(graph.output),
                                     value_info=list(graph.value_info),
                                     sparse_initializer=list(graph.sparse_initializer))
    for tensor in list(external_tensors(checked)):  # copies: make_graph copied the nodes
        _leave_empty(tensor)
    return onnx.helper.make_model(checked, ir_version=proto.ir_version, opset_imports=list(proto.opset_import),
                                  functions=list(proto.functions))


def _leave_empty(tensor: onnx.TensorProto) -> None:
    del tensor.external_data[:]
    tensor.ClearField("data_location")
    del tensor.dims[:]
    tensor.dims.append(0)


def _layers(converted: ConvertedNetwork) -> list[Layer]:
    """Nodes that own parameters: their converted layer's, plus promoted initializers they read first."""
    module = converted.module
    layers: list[Layer] = []
    claimed: set[str] = set()
    for node in module.onnx_model.graph.node:  # the converted graph: fused nodes are gone from it
        path = module.mapping[node.output[0]]
        names = [f"{path}.{p}" for p, _ in getattr(module, path).named_parameters()]
        for initializer in node.input:
            if initializer in converted.promoted and initializer not in claimed:
                names.append(converted.promoted[initializer])
                claimed.add(initializer)
        if names:
            layers.append(Layer(node.name, node.op_type, len(layers), names))
    return layers


def _input_specs(graph: onnx.GraphProto) -> list[InputSpec]:
    initializers = {t.name: t for t in graph.initializer}
    return [_input_spec(value, graph, initializers) for value in graph.input if value.name not in initializers]


def _input_spec(value: onnx.ValueInfoProto, graph: onnx.GraphProto, initializers: dict) -> InputSpec:
    tensor_type = value.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor_type.shape.dim]
    declared = dims if tensor_type.HasField("shape") else None
    vocab = vocabulary_size(value.name, graph, initializers)
    return InputSpec(value.name, declared, _torch_dtype(tensor_type.elem_type), vocab)


def _torch_dtype(elem_type: int) -> torch.dtype | None:
    try:
        return torch.from_numpy(np.empty(0, dtype=onnx.helper.tensor_dtype_to_np_dtype(elem_type))).dtype
    except (KeyError, TypeError, ValueError):
        return None  # strings and exotic types: the forward pass will say what it cannot take


def _opset(proto: onnx.ModelProto) -> int | None:
    return next((imp.version for imp in proto.opset_import if imp.domain in ("", "ai.onnx")), None)

