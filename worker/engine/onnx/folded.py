"""BatchNorm that an exporter folded into the convolution before it, restored where the evidence allows.

In eval mode a BatchNorm is an affine map, so exporters fold it into the Conv that feeds it: weight
times gamma / sqrt(var + eps), bias beta - mean * gamma / sqrt(var + eps). For a BatchNorm that was never trained
(gamma 1, beta 0, running mean 0, variance 1) the folded bias is exactly zero and the weight barely changes, so
the file holds a plain convolution — yet every training step normalises that convolution's output with the
batch's own statistics. Probing the file as it is measures a network nobody trains (MobileNetV3's activations
fall nine decades; EfficientNet's logits vanish).

The evidence, by exporter:
- the dynamo exporter (torch.onnx.export's default) marks each fused node: its metadata names the rewrite rule
  `FuseBatchNormIntoConv` and a BatchNorm module in the node's class hierarchy;
- the legacy exporter with constant folding gives a folded weight a generated name (`onnx::Conv_12`) where an
  unfolded one keeps its module's (`layer1.0.conv1.weight`), and writes a bias the convolution did not have.
Either is a folded BatchNorm; a bias that is absent (the dynamo optimiser drops zero biases) or exactly zero
makes it an untrained one. Such a node gets back a BatchNormalization at its initial statistics, which the
probe then runs with batch statistics like any other untrained BatchNorm (worker/engine/normalization.py). A
folded BatchNorm with calibrated statistics carries a non-zero bias and is left as it is: in eval mode it is
exactly what the user's own evaluation computes.
"""

from __future__ import annotations

import math

import numpy as np
import onnx

from worker.engine.onnx.external_data import read_array
from worker.engine.onnx.graph import initializer_index

EPSILON = 1e-5  # torch.nn.BatchNorm's default, with which the exporter divided the folded weight
_GENERATED_PREFIX = "onnx::"


def restore_folded_batch_norms(graph: onnx.GraphProto) -> list[str]:
    """Insert a BatchNormalization at initial statistics after each node carrying a folded, untrained BatchNorm;
    the names of the inserted nodes, in graph order."""
    initializers = {**initializer_index(graph), **_identities_of_initializers(graph)}
    restored, nodes = [], []
    for node in graph.node:
        nodes.append(node)
        if node.op_type == "Conv" and node.input[1] in initializers and _folded(node) and _untrained(
                node, initializers):
            norm = _batch_norm_after(node, graph, initializers)
            nodes.append(norm)
            restored.append(norm.name)
    if restored:
        del graph.node[:]
        graph.node.extend(nodes)
    return restored


def _identities_of_initializers(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    """Identity outputs that stand for an initializer: the legacy exporter stores equal folded biases once and
    hands each convolution its own name for it through an Identity."""
    initializers = initializer_index(graph)
    return {node.output[0]: initializers[node.input[0]] for node in graph.node
            if node.op_type == "Identity" and node.input[0] in initializers}


def _folded(node: onnx.NodeProto) -> bool:
    metadata = {entry.key: entry.value for entry in node.metadata_props}
    if "FuseBatchNormIntoConv" in metadata.get("pkg.onnxscript.rewriter.rule_name", ""):
        return "BatchNorm" in metadata.get("pkg.torch.onnx.class_hierarchy", "")
    generated = [name.startswith(_GENERATED_PREFIX) for name in node.input[1:3] if name]
    return len(generated) == 2 and all(generated)  # a generated weight and a generated bias


def _untrained(node: onnx.NodeProto, initializers: dict[str, onnx.TensorProto]) -> bool:
    if len(node.input) < 3 or not node.input[2]:
        return True
    bias = initializers.get(node.input[2])
    return bias is not None and not np.any(_values(bias))


def _values(tensor: onnx.TensorProto) -> np.ndarray:
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        return read_array(tensor)
    return onnx.numpy_helper.to_array(tensor)


def _batch_norm_after(node: onnx.NodeProto, graph: onnx.GraphProto,
                      initializers: dict[str, onnx.TensorProto]) -> onnx.NodeProto:
    """A BatchNormalization reading the node's output under that output's name, the node writing a new one."""
    channels = int(initializers[node.input[1]].dims[0])
    name = f"{node.name or node.output[0]}/restored_batch_norm"
    folded_output = f"{node.output[0]}/before_restored_batch_norm"
    # Scale sqrt(1 + eps) makes the restored node an exact identity in eval mode (the file's own computation,
    # which the parity check compares with onnxruntime); under batch statistics any scale is one the folded
    # weight's 1/sqrt(1 + eps) already carried.
    values = {"scale": math.sqrt(1.0 + EPSILON), "bias": 0.0, "mean": 0.0, "var": 1.0}
    inputs = [folded_output]
    for role, value in values.items():
        tensor = onnx.numpy_helper.from_array(np.full(channels, value, dtype=np.float32), f"{name}/{role}")
        graph.initializer.append(tensor)
        inputs.append(tensor.name)
    output = node.output[0]
    node.output[0] = folded_output
    return onnx.helper.make_node("BatchNormalization", inputs, [output], name=name, epsilon=EPSILON)



def folded_setup(restored: list[str]) -> dict:
    """setup's account of restored BatchNorms, where there were any."""
    if not restored:
        return {}
    return {"restored_batch_norms": restored,
            "restored_batch_norms_rule": "the exporter folded these untrained BatchNorms into the convolution "
                                         "before them (a generated weight with an exactly zero or no bias, or "
                                         "the dynamo exporter's FuseBatchNormIntoConv mark); each is restored at "
                                         "its initial statistics and normalises with batch statistics, as in "
                                         "training. Export with BatchNorm kept to let the audit see it directly: "
                                         "torch.onnx.export(..., dynamo=False, do_constant_folding=False), or "
                                         "training=torch.onnx.TrainingMode.PRESERVE"}
