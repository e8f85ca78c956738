"""Load an ONNX artifact: validate it, convert it to torch, and map torch parameters back to ONNX nodes."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import torch

from worker.engine.errors import AuditError, one_line
from worker.engine.external_data import attach_external_data
from worker.engine.load import InputSpec, Layer, LoadedNetwork
from worker.engine.onnx_convert import ConvertedNetwork, convert_onnx

_OP_NAMES = {
    "Relu": "relu", "LeakyRelu": "leaky_relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Gelu": "gelu",
    "Elu": "elu", "BatchNormalization": "batch_norm", "LayerNormalization": "layer_norm",
    "InstanceNormalization": "instance_norm", "GroupNormalization": "group_norm",
}


def load_onnx(path: Path, external_data_dir: Path | None = None) -> LoadedNetwork:
    """Load, validate and convert an ONNX artifact (its external weights, if any, from external_data_dir)."""
    proto = _read_proto(path)
    attach_external_data(proto, external_data_dir)
    _check(proto)
    described = _describe(proto)
    # Read from the file for this load alone, so conversion may rewrite it rather than a deep copy.
    converted = convert_onnx(proto, take=True)
    del proto  # from here on the module holds the only copy of the weights
    return LoadedNetwork(
        module=converted.module,
        format="onnx",
        layers=_layers(converted),
        notes={"opset": described.pop("opset"), "conversion_warnings": converted.warnings},
        nodes=converted.nodes,
        source_path=Path(path),
        **described,
    )


def _describe(proto: onnx.ModelProto) -> dict:
    return {
        "inputs": _input_specs(proto.graph),
        "op_counts": dict(Counter(_OP_NAMES[n.op_type] for n in proto.graph.node if n.op_type in _OP_NAMES)),
        "output_names": [o.name for o in proto.graph.output],
        "opset": _opset(proto),
    }


def _read_proto(path: Path) -> onnx.ModelProto:
    try:
        # External tensors are loaded only from a confined folder (external_data.py), never followed here.
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise AuditError("invalid_onnx", f"not a readable ONNX file ({one_line(exc, 200)})") from None


def _check(proto: onnx.ModelProto) -> None:
    try:
        onnx.checker.check_model(skeleton(proto))
    except Exception as exc:
        raise AuditError("invalid_onnx", one_line(exc, 300)) from None


def skeleton(proto: onnx.ModelProto) -> onnx.ModelProto:
    """proto without its weights: each initializer declared as a graph input of the same type and shape.

    The checker reads the graph, not the weights; handed the whole proto it serializes it and parses it
    again in C++, two more copies of the weights at once (3.6x their size at the peak of a 477 MB load).
    """
    graph = proto.graph
    declared = {value.name for value in graph.input}
    weights = [onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
               for t in graph.initializer if t.name not in declared]
    checked = onnx.helper.make_graph(list(graph.node), graph.name, list(graph.input) + weights, list(graph.output),
                                     value_info=list(graph.value_info),
                                     sparse_initializer=list(graph.sparse_initializer))
    return onnx.helper.make_model(checked, ir_version=proto.ir_version, opset_imports=list(proto.opset_import),
                                  functions=list(proto.functions))


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
    return InputSpec(value.name, declared, _torch_dtype(tensor_type.elem_type), _vocab(value.name, graph, initializers))


def _torch_dtype(elem_type: int) -> torch.dtype | None:
    try:
        return torch.from_numpy(np.empty(0, dtype=onnx.helper.tensor_dtype_to_np_dtype(elem_type))).dtype
    except (KeyError, TypeError, ValueError):
        return None  # strings and exotic types: the forward pass will say what it cannot take


def _vocab(input_name: str, graph: onnx.GraphProto, initializers: dict) -> int | None:
    for node in graph.node:
        if node.op_type == "Gather" and len(node.input) > 1 and node.input[1] == input_name:
            table = initializers.get(node.input[0])
            if table is not None and table.dims:
                return int(table.dims[0])
    return None


def _opset(proto: onnx.ModelProto) -> int | None:
    return next((imp.version for imp in proto.opset_import if imp.domain in ("", "ai.onnx")), None)

