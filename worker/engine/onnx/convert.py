"""Convert a prepared ONNX graph with onnx2pytorch and leave one hookable, trainable copy of its weights."""

from __future__ import annotations

import re
import warnings
from collections.abc import Collection
from dataclasses import dataclass
from functools import partial

import numpy as np
import onnx
import torch
from onnx2pytorch import ConvertModel
from onnx2pytorch.constants import COMPOSITE_LAYERS, STANDARD_LAYERS
from onnx2pytorch.convert.operations import get_buffer_name

from gradaudit.errors import AuditError, one_line
from worker.engine.network import NodeInfo
from worker.engine.normalization import normalise_with_batch_statistics
from worker.engine.onnx.graph import LAYOUT_OPS, SHAPE_OPS, names_read_by_subgraphs
from worker.engine.onnx.ops import runtime_module
from worker.engine.onnx.prepare import FLOAT_TYPES, RUNTIME_WEIGHT_OPS, graph_inputs, nodes_fed_by, prepare


class Concat(torch.nn.Module):
    """ONNX Concat as a module, so hooks see it (onnx2pytorch leaves a bare functools.partial)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return torch.cat(tensors, dim=self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


@dataclass(frozen=True)
class ConvertedNetwork:
    """The torch network, its nodes in order, promoted initializers (name -> attribute), warnings."""

    module: ConvertModel
    nodes: list[NodeInfo]
    promoted: dict[str, str]
    warnings: list[str]
    batch_statistics: set[str]  # names of BatchNormalization nodes exported in training mode


def convert_onnx(proto: onnx.ModelProto, *, take: bool = False) -> ConvertedNetwork:
    """Prepare a copy of proto (proto itself with take=True), convert it, finish the module.

    Finishing: eval mode, Concat as a module, read float initializers as parameters, one copy of the weights
    (Conv, ConvTranspose, Gemm and MatMul weights never pass through the converter: prepare hands them over as
    tensors).
    """
    prepared = prepare(proto, take=take)
    module, caught = _convert(prepared.proto)
    _modularise_concat(module)
    try:
        _swap_in_runtime_modules(module, prepared.runtime_nodes)
    except (TypeError, ValueError) as exc:  # an attribute our module does not know
        raise AuditError("conversion_failed", one_line(exc)) from None
    graph = module.onnx_model.graph
    promoted = _register_runtime_weights(module, prepared.weights)
    promoted |= _promote_read_initializers(module, graph, exclude=prepared.recurrent_states,
                                           weights=_weight_inputs(graph, prepared.runtime_nodes))
    _drop_unread_buffers(module, graph)
    on_data = _nodes_reading_data(graph, parameters=set(promoted))
    nodes = [NodeInfo(n.name, n.op_type, depth, module.mapping[n.output[0]], n.op_type in LAYOUT_OPS,
                      reads_data=n.name in on_data) for depth, n in enumerate(graph.node)]
    module.onnx_model = _without_initializers(module.onnx_model)
    module.eval()
    normalise_nodes_with_batch_statistics(module, prepared.batch_statistics)
    return ConvertedNetwork(module, nodes, promoted, caught, prepared.batch_statistics)


def normalise_nodes_with_batch_statistics(module: ConvertModel, names: Collection[str]) -> None:
    """Have the named BatchNormalization nodes normalise with batch statistics."""
    for node in module.onnx_model.graph.node:
        if node.name in names:
            normalise_with_batch_statistics(batch_norm_module(module, node))


def batch_norm_module(module: ConvertModel, node: onnx.NodeProto) -> torch.nn.modules.batchnorm._BatchNorm:
    """The torch BatchNorm that computes a converted BatchNormalization node."""
    wrapper = getattr(module, module.mapping[node.output[0]])
    return wrapper.bnu


def _nodes_reading_data(graph: onnx.GraphProto, parameters: set[str]) -> set[str]:
    """Names of the nodes whose output depends on the values of a graph input or a parameter, not only on shapes
    and constants.

    The others are shape arithmetic, like the scale sqrt(head size) an exporter computes from Shape at run time:
    the report has nothing to say of them. Nodes with subgraphs count as reading data, whatever they read.
    """
    return {node.name for node in nodes_fed_by(graph, graph_inputs(graph) | parameters, not_through=SHAPE_OPS)}


def _without_initializers(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A fresh copy minus initializers (forward reads the module's tensors, not the proto's).

    Protobuf (upb) frees a message's memory only with the whole message, so clearing the field is not enough.
    """
    del proto.graph.initializer[:]
    slim = onnx.ModelProto()
    slim.CopyFrom(proto)
    return slim


def _convert(proto: onnx.ModelProto) -> tuple[ConvertModel, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            module = ConvertModel(proto)
        except NotImplementedError as exc:
            raise AuditError("unsupported_operator", _unsupported_detail(exc)) from None
        except Exception as exc:
            raise AuditError("conversion_failed", one_line(exc)) from None
    notes = sorted({str(w.message)[:200] for w in caught if issubclass(w.category, RuntimeWarning)})
    return module, notes


def _unsupported_detail(exc: NotImplementedError) -> str:
    match = re.search(r"op_type=(\w+)", str(exc))
    if match:
        return f"operator '{match.group(1)}' is not supported by the ONNX-to-torch converter"
    return f"not supported by the ONNX-to-torch converter: {one_line(exc, 250)}"


def _modularise_concat(module: ConvertModel) -> None:
    for name in module.mapping.values():
        op = getattr(module, name)
        if isinstance(op, partial) and op.func is torch.cat:
            setattr(module, name, Concat(op.keywords.get("dim", 0)))


def _swap_in_runtime_modules(module: ConvertModel, originals: dict[str, onnx.NodeProto]) -> None:
    """Replace each placeholder by our module for the original node, named and typed as the original."""
    for node in module.onnx_model.graph.node:
        original = originals.get(node.output[0])
        if original is None:
            continue
        delattr(module, module.mapping[node.output[0]])
        name = f"{original.op_type}_{node.output[0]}"
        setattr(module, name, runtime_module(original))
        module.mapping[node.output[0]] = name
        node.op_type = original.op_type


def _register_runtime_weights(module: ConvertModel, weights: dict[str, torch.Tensor]) -> dict[str, str]:
    """Parameters under the names forward looks initializers up by; return initializer name -> attribute."""
    for name, tensor in weights.items():
        if hasattr(module, get_buffer_name(name)):  # the converter's names map '.' to '_': 'fc.w' meets 'fc_w'
            raise AuditError("conversion_failed", f"initializer '{name}' and another one share the converter's "
                                                  f"attribute name '{get_buffer_name(name)}'")
        module.register_parameter(get_buffer_name(name), torch.nn.Parameter(tensor))
    return {name: get_buffer_name(name) for name in weights}


def _reads_initializers(op) -> bool:
    """Whether ConvertModel.forward feeds this op the graph's initializers (not only activations)."""
    if isinstance(op, STANDARD_LAYERS):
        return False
    return not (isinstance(op, COMPOSITE_LAYERS) and any(isinstance(m, STANDARD_LAYERS) for m in op.modules()))


def _initializers_read(module: ConvertModel, graph: onnx.GraphProto) -> list[str]:
    """Initializer names forward hands to some op, in node order (subgraph bodies read from the root too)."""
    initializers = {t.name for t in graph.initializer}
    read = [name for n in graph.node if _reads_initializers(getattr(module, module.mapping[n.output[0]]))
            for name in n.input if name in initializers]
    read += [name for name in names_read_by_subgraphs(graph) if name in initializers]
    return list(dict.fromkeys(read))


def _weight_inputs(graph: onnx.GraphProto, runtime_nodes: dict[str, onnx.NodeProto]) -> set[str]:
    """Names our Conv, ConvTranspose, Gemm and MatMul modules read as weight and bias, whatever their size."""
    return {name for node in graph.node if node.output[0] in runtime_nodes
            and runtime_nodes[node.output[0]].op_type in RUNTIME_WEIGHT_OPS for name in node.input[1:]}


def _promote_read_initializers(module: ConvertModel, graph: onnx.GraphProto, exclude: set[str],
                               weights: set[str]) -> dict[str, str]:
    """Turn float initializers that forward reads into parameters; return initializer name -> attribute.

    Size-one tensors are exporter constants (eps, exponents) except where a weight layer reads them: the bias
    of a layer with one output is a weight like any other.
    """
    trainable = {t.name for t in graph.initializer if _is_float(t) and (_is_trainable(t) or t.name in weights)}
    trainable -= exclude
    promoted: dict[str, str] = {}
    for name in _initializers_read(module, graph):
        attribute = get_buffer_name(name)
        if name in trainable and attribute in module._buffers:
            tensor = module._buffers.pop(attribute)
            module.register_parameter(attribute, torch.nn.Parameter(tensor))
            promoted[name] = attribute
    return promoted


def _is_trainable(tensor: onnx.TensorProto) -> bool:
    # Scalars are exporter constants (eps, exponents, scales), not weights anyone trains.
    return _is_float(tensor) and int(np.prod(tensor.dims)) > 1


def _is_float(tensor: onnx.TensorProto) -> bool:
    return tensor.data_type in FLOAT_TYPES


def _drop_unread_buffers(module: ConvertModel, graph: onnx.GraphProto) -> None:
    """Delete root buffers forward never reads: the converter already copied them into a layer."""
    read = {get_buffer_name(name) for name in _initializers_read(module, graph)}
    for tensor in graph.initializer:
        attribute = get_buffer_name(tensor.name)
        if attribute not in read:
            module._buffers.pop(attribute, None)
            if attribute in module.__dict__:  # string tensors are stored as plain numpy attributes
                delattr(module, attribute)
