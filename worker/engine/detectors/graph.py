"""The graph's structure as the structural detectors see it: normalization layers, skip connections, and the
fewest weight layers a gradient must cross from the loss to the input (a plain stack crosses all of them).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

_ONNX_WEIGHT_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul", "RNN", "LSTM", "GRU"})
_ONNX_NORM_OPS = frozenset({"BatchNormalization", "LayerNormalization", "InstanceNormalization",
                            "GroupNormalization", "RMSNormalization"})
_TS_WEIGHT_OPS = frozenset({"aten::linear", "aten::_convolution", "aten::conv1d", "aten::conv2d", "aten::conv3d",
                            "aten::conv_transpose2d", "aten::addmm", "aten::rnn_tanh", "aten::rnn_relu",
                            "aten::lstm", "aten::gru", "aten::bilinear"})
_TS_NORM_OPS = frozenset({"aten::batch_norm", "aten::layer_norm", "aten::instance_norm", "aten::group_norm",
                          "aten::rms_norm", "aten::native_layer_norm"})
_MERGES = frozenset({"Add", "Sum", "aten::add", "aten::add_"})


@dataclass(frozen=True)
class Structure:
    """Counts read from the graph; shortest_path is None where no weight layer lies between input and loss."""

    weight_ops: int
    normalizations: int
    skips: int  # additions of two computed tensors (residual connections)
    shortest_path: int | None


def structure(network) -> Structure | None:
    """The structure of a loaded network's graph; None if the graph cannot be read."""
    try:
        if network.format == "onnx":
            return _onnx(network.module.onnx_model.graph)
        return _torchscript(network.module.inlined_graph)
    except Exception:  # a graph we cannot walk only costs the structural findings, never the audit
        return None


def _onnx(graph) -> Structure:
    constants = {i.name for i in graph.initializer}
    constants |= {o for n in graph.node if n.op_type in ("Constant", "ConstantOfShape") for o in n.output}
    distance = {i.name: 0 for i in graph.input if i.name not in constants}
    counts = {"weights": 0, "norms": 0, "skips": 0}
    for node in graph.node:
        computed = [distance[i] for i in node.input if i in distance]
        weighted = node.op_type in _ONNX_WEIGHT_OPS and (node.op_type != "MatMul" or len(computed) == 1)
        counts["weights"] += weighted
        counts["norms"] += node.op_type in _ONNX_NORM_OPS
        counts["skips"] += node.op_type in _MERGES and len(computed) >= 2 and len(set(computed)) > 1
        if computed:
            for output in node.output:
                distance[output] = min(computed) + weighted
    ends = [distance[o.name] for o in graph.output if o.name in distance]
    return Structure(counts["weights"], counts["norms"], counts["skips"], min(ends) if ends else None)


def _torchscript(graph: torch._C.Graph) -> Structure:
    distance = {value.debugName(): 0 for value in list(graph.inputs())[1:] if _is_tensor(value)}
    counts = {"weights": 0, "norms": 0, "skips": 0}
    for node in graph.nodes():
        kind = node.kind()
        computed = [distance[v.debugName()] for v in node.inputs() if v.debugName() in distance]
        weighted = kind in _TS_WEIGHT_OPS
        counts["weights"] += weighted
        counts["norms"] += kind in _TS_NORM_OPS
        counts["skips"] += kind in _MERGES and len(computed) >= 2 and len(set(computed)) > 1
        if computed:
            for output in node.outputs():
                distance[output.debugName()] = min(computed) + weighted
    ends = [distance[v.debugName()] for v in graph.outputs() if v.debugName() in distance]
    return Structure(counts["weights"], counts["norms"], counts["skips"], min(ends) if ends else None)


def _is_tensor(value: torch._C.Value) -> bool:
    return isinstance(value.type(), torch._C.TensorType)
