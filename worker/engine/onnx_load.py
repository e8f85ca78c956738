"""Load an ONNX artifact: validate it, convert it to torch, and map torch parameters back to ONNX nodes."""

from __future__ import annotations

import copy
import re
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx2pytorch import ConvertModel
from onnx2pytorch.constants import COMPOSITE_LAYERS, STANDARD_LAYERS
from onnx2pytorch.convert.operations import get_buffer_name

from worker.engine.errors import AuditError, one_line
from worker.engine.external_data import attach_external_data
from worker.engine.load import InputSpec, Layer, LoadedNetwork

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
    module, conversion_warnings = _convert(_prepared_copy(proto))
    promoted = _promote_read_initializers(module)
    graph = module.onnx_model.graph  # the converted copy: fused nodes are gone from it
    return LoadedNetwork(
        module=module,
        format="onnx",
        inputs=_input_specs(proto.graph),
        layers=_layers(module, graph, promoted),
        op_counts=dict(Counter(_OP_NAMES[n.op_type] for n in proto.graph.node if n.op_type in _OP_NAMES)),
        output_names=[o.name for o in proto.graph.output],
        notes={"opset": _opset(proto), "conversion_warnings": conversion_warnings},
        onnx_bytes=proto.SerializeToString(),
    )


def _read_proto(path: Path) -> onnx.ModelProto:
    try:
        # External tensors are loaded only from a confined folder (external_data.py), never followed here.
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise AuditError("invalid_onnx", f"not a readable ONNX file ({one_line(exc, 200)})") from None


def _check(proto: onnx.ModelProto) -> None:
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise AuditError("invalid_onnx", one_line(exc, 300)) from None


def _prepared_copy(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A deep copy (conversion mutates its input) with stable node names and no Identity-of-initializer nodes."""
    prepared = copy.deepcopy(proto)
    for index, node in enumerate(prepared.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{index}"
    _fold_initializer_identities(prepared.graph)
    return prepared


def _fold_initializer_identities(graph: onnx.GraphProto) -> None:
    """Let nodes read initializers directly where the exporter routed them through Identity.

    The legacy exporter does this with do_constant_folding=False, and the converter only gives a Conv or
    Gemm its weights when they are initializers; through an Identity it would keep random ones.
    """
    initializers = {t.name for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    aliases = {n.output[0]: n.input[0] for n in graph.node
               if n.op_type == "Identity" and n.input[0] in initializers and n.output[0] not in outputs}
    kept = [n for n in graph.node if not (n.op_type == "Identity" and n.output[0] in aliases)]
    for node in kept:
        node.input[:] = [aliases.get(name, name) for name in node.input]
    del graph.node[:]
    graph.node.extend(kept)


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
    # onnx2pytorch leaves train mode on, and its BatchNorm wrapper is only faithful in eval mode.
    return module.eval(), notes


def _unsupported_detail(exc: NotImplementedError) -> str:
    match = re.search(r"op_type=(\w+)", str(exc))
    if match:
        return f"operator '{match.group(1)}' is not supported by the ONNX-to-torch converter"
    return f"not supported by the ONNX-to-torch converter: {one_line(exc, 250)}"


def _reads_initializers(op) -> bool:
    """Whether ConvertModel.forward feeds this op the graph's initializers (not only activations)."""
    if isinstance(op, STANDARD_LAYERS):
        return False
    return not (isinstance(op, COMPOSITE_LAYERS) and any(isinstance(m, STANDARD_LAYERS) for m in op.modules()))


def _promote_read_initializers(module: ConvertModel) -> dict[str, str]:
    """Turn float initializers that forward reads into parameters; return initializer name -> attribute."""
    graph = module.onnx_model.graph
    trainable = {t.name for t in graph.initializer if _is_trainable(t)}
    promoted: dict[str, str] = {}
    for node in graph.node:
        if not _reads_initializers(getattr(module, module.mapping[node.output[0]])):
            continue
        for name in node.input:
            attribute = get_buffer_name(name)
            if name in trainable and name not in promoted and attribute in module._buffers:
                tensor = module._buffers.pop(attribute)
                module.register_parameter(attribute, torch.nn.Parameter(tensor.clone()))
                promoted[name] = attribute
    return promoted


def _is_trainable(tensor: onnx.TensorProto) -> bool:
    # Scalars are exporter constants (eps, exponents, scales), not weights anyone trains.
    is_float = tensor.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16)
    return is_float and int(np.prod(tensor.dims)) > 1


def _layers(module: ConvertModel, graph: onnx.GraphProto, promoted: dict[str, str]) -> list[Layer]:
    layers: list[Layer] = []
    claimed: set[str] = set()
    for node in graph.node:
        submodule_name = module.mapping[node.output[0]]
        submodule = getattr(module, submodule_name)
        names = [f"{submodule_name}.{p}" for p, _ in submodule.named_parameters()] if isinstance(submodule, torch.nn.Module) else []
        for init in node.input:
            if init in promoted and init not in claimed:
                names.append(promoted[init])
                claimed.add(init)
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

