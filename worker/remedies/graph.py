"""Reading an ONNX graph the way the edits need it: who produces and who reads each value, the weight layer behind
a report's layer name, its weight and bias as torch tensors in torch's layout, and the activation after it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from worker.engine.onnx.sizes import with_shape_constants_only

WEIGHT_OPS = ("Gemm", "MatMul", "Conv")
ACTIVATION_OPS = ("Relu", "LeakyRelu", "Sigmoid", "Tanh", "Elu", "Selu", "Gelu", "HardSigmoid", "Softplus")
# Ops between a weight layer and its activation that keep its meaning: MatMul's bias Add, layout moves.
_PASSED_OVER = ("Add", "Identity", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze")


class NotApplicable(Exception):
    """The edit cannot be made on this network; the message says why, in words for the user."""


@dataclass
class Graph:
    """One ONNX network being edited: its proto, nodes by name, producers and readers of every value."""

    proto: onnx.ModelProto

    @property
    def graph(self) -> onnx.GraphProto:
        return self.proto.graph

    def without_weights(self) -> onnx.ModelProto:
        """The graph for shape inference: its shape constants kept, every weight declared as an input of its type
        and dims, so nothing large is copied or serialised (the engine's size check reads graphs the same way)."""
        return with_shape_constants_only(self.proto)

    def node(self, name: str) -> onnx.NodeProto:
        """The node a report's layer name stands for (the report names ONNX layers by node name)."""
        for node in self.graph.node:
            if node.name == name:
                return node
        raise NotApplicable(f"the graph has no node named {name!r}")

    def readers(self, value: str) -> list[onnx.NodeProto]:
        return [node for node in self.graph.node if value in node.input]

    def producer(self, value: str) -> onnx.NodeProto | None:
        return next((node for node in self.graph.node if value in node.output), None)

    def initializer(self, name: str) -> onnx.TensorProto | None:
        return next((tensor for tensor in self.graph.initializer if tensor.name == name), None)

    def unique_name(self, stem: str) -> str:
        taken = {v for node in self.graph.node for v in (*node.input, *node.output, node.name)}
        taken |= {t.name for t in self.graph.initializer} | {v.name for v in self.graph.input}
        name, n = stem, 1
        while name in taken:
            name, n = f"{stem}_{n}", n + 1
        return name

    def add_initializer(self, stem: str, array: np.ndarray) -> str:
        name = self.unique_name(stem)
        self.graph.initializer.append(numpy_helper.from_array(array, name))
        return name

    def set_initializer(self, name: str, array: np.ndarray) -> None:
        tensor = self.initializer(name)
        tensor.CopyFrom(numpy_helper.from_array(array.astype(numpy_helper.to_array(tensor).dtype), name))

    def replace(self, old: onnx.NodeProto, new: onnx.NodeProto) -> None:
        """Put new where old is (found by its outputs)."""
        for node in self.graph.node:
            if list(node.output) == list(old.output):
                node.CopyFrom(new)
                return

    def insert_before(self, anchor: onnx.NodeProto, new_nodes: list[onnx.NodeProto]) -> None:
        """Put new_nodes right before anchor (in place: every node object held elsewhere stays the graph's)."""
        self._insert(self._index(anchor), new_nodes)

    def insert_after(self, anchor: onnx.NodeProto, new_nodes: list[onnx.NodeProto]) -> None:
        """Put new_nodes right after anchor, keeping the node list in topological order."""
        self._insert(self._index(anchor) + 1, new_nodes)

    def _index(self, anchor: onnx.NodeProto) -> int:
        return next(i for i, node in enumerate(self.graph.node) if list(node.output) == list(anchor.output))

    def _insert(self, at: int, new_nodes: list[onnx.NodeProto]) -> None:
        for offset, node in enumerate(new_nodes):
            self.graph.node.insert(at + offset, node)

    def reroute(self, value: str, to: str) -> None:
        """Every reader of value reads `to` instead; NotApplicable where value is a graph output."""
        for node in self.graph.node:
            for i, name in enumerate(node.input):
                if name == value:
                    node.input[i] = to
        if any(output.name == value for output in self.graph.output):
            raise NotApplicable(f"{value!r} is a graph output")


@dataclass
class WeightLayer:
    """A Gemm, MatMul or Conv whose weight is an initializer; weight and bias views in torch's layout."""

    node: onnx.NodeProto
    weight_name: str
    bias_name: str | None
    transposed: bool  # the ONNX tensor is [in, out]: Gemm without transB, MatMul

    def weight(self, graph: Graph) -> torch.Tensor:
        """[out, in, *kernel], as torch.nn.init expects it."""
        array = numpy_helper.to_array(graph.initializer(self.weight_name)).copy()
        return torch.from_numpy(array.T.copy() if self.transposed else array)

    def set_weight(self, graph: Graph, weight: torch.Tensor) -> None:
        array = weight.detach().numpy()
        graph.set_initializer(self.weight_name, array.T.copy() if self.transposed else array)

    def fan_in_and_out(self, graph: Graph) -> tuple[int, int]:
        shape = self.weight(graph).shape
        receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
        return shape[1] * receptive, shape[0] * receptive


def weight_layer(graph: Graph, name: str) -> WeightLayer:
    """The named layer as a weight layer; NotApplicable where it is not one with initializer weights."""
    node = graph.node(name)
    if node.op_type not in WEIGHT_OPS:
        raise NotApplicable(f"layer {name!r} is a {node.op_type}, not a weight layer this edit can change")
    for position in range(1, min(len(node.input), 3)):
        own_copy(graph, node, position)
    if len(node.input) < 2 or graph.initializer(node.input[1]) is None:
        raise NotApplicable(f"the weights of layer {name!r} are computed in the graph, not stored")
    rank = len(graph.initializer(node.input[1]).dims)
    if node.op_type == "MatMul" and rank != 2:
        raise NotApplicable(f"layer {name!r} multiplies by a rank-{rank} tensor, not a weight matrix")
    transposed = node.op_type == "MatMul" or (node.op_type == "Gemm" and not _attribute(node, "transB", 0))
    return WeightLayer(node, node.input[1], _bias_name(graph, node), transposed)


def own_copy(graph: Graph, node: onnx.NodeProto, position: int) -> None:
    """Give node its own initializer at input `position` where it reads a shared one or one through Identity
    nodes: torch's exporter stores equal tensors once (every zero-initialised layer, every bias of -3) and feeds
    the other layers through Identity, and an edit of one layer must not change the others."""
    name = node.input[position]
    source = name
    for _ in range(4):
        producer = graph.producer(source)
        if producer is None or producer.op_type != "Identity":
            break
        source = producer.input[0]
    tensor = graph.initializer(source)
    if tensor is None:
        return
    readers = [n for n in graph.graph.node if source in n.input]
    if source == name and len(readers) <= 1:
        return  # already its own
    copy = graph.add_initializer(f"{node.name or node.output[0]}_{'weight' if position == 1 else 'bias'}",
                                 numpy_helper.to_array(tensor).copy())
    node.input[position] = copy


def _bias_name(graph: Graph, node: onnx.NodeProto) -> str | None:
    if node.op_type in ("Gemm", "Conv") and len(node.input) > 2 and graph.initializer(node.input[2]) is not None:
        return node.input[2]
    if node.op_type == "MatMul":
        readers = graph.readers(node.output[0])
        if len(readers) == 1 and readers[0].op_type == "Add":
            add = readers[0]
            position = next(i for i, name in enumerate(add.input) if name != node.output[0])
            own_copy(graph, add, position)
            if graph.initializer(add.input[position]) is not None:
                return add.input[position]
    return None


def pre_activation(graph: Graph, layer: WeightLayer) -> onnx.NodeProto:
    """The last node of the weight layer before its activation: the layer itself, or MatMul's bias Add."""
    node = layer.node
    readers = graph.readers(node.output[0])
    if node.op_type == "MatMul" and len(readers) == 1 and readers[0].op_type == "Add" and layer.bias_name:
        return readers[0]
    return node


def activation_after(graph: Graph, layer: WeightLayer) -> onnx.NodeProto | None:
    """The activation node reading this layer's output, past a bias Add and layout ops; None if none follows."""
    value, seen = layer.node.output[0], 0
    while seen < 8:
        readers = graph.readers(value)
        if len(readers) != 1:
            return None
        reader = readers[0]
        if reader.op_type in ACTIVATION_OPS:
            return reader
        if reader.op_type not in _PASSED_OVER and reader.op_type != "BatchNormalization":
            return None
        value, seen = reader.output[0], seen + 1
    return None


def _attribute(node: onnx.NodeProto, name: str, default):
    for attribute in node.attribute:
        if attribute.name == name:
            return onnx.helper.get_attribute_value(attribute)
    return default


def opset(proto: onnx.ModelProto) -> int:
    return next((imp.version for imp in proto.opset_import if imp.domain in ("", "ai.onnx")), 1)
