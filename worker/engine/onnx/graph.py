"""What every ONNX module needs to know about a graph, defined once: the default domains, which operators only
move data, and walks over a graph with its subgraphs (If, Loop and Scan bodies)."""

from __future__ import annotations

from collections.abc import Iterator

import onnx

DEFAULT_DOMAINS = ("", "ai.onnx")
# Ops whose output is a shape: what follows from them alone is shape arithmetic.
SHAPE_OPS = frozenset({"Shape", "Size"})
# Ops that only move, select or relabel data (and Dropout, an identity in eval): not layers, never tapped.
LAYOUT_OPS = frozenset({
    "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Shape", "Size", "Gather", "Cast",
    "CastLike", "Constant", "ConstantOfShape", "Expand", "Range", "Slice", "Split", "Tile", "Dropout",
    "RecurrentOutput",
})


def initializer_index(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    """The graph's initializers by name."""
    return {tensor.name: tensor for tensor in graph.initializer}


def all_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node of the graph, each followed by the nodes of its bodies, nested ones included."""
    for node in graph.node:
        yield node
        yield from nodes_in_bodies(node)


def nodes_in_bodies(node: onnx.NodeProto) -> Iterator[onnx.NodeProto]:
    """Every node inside the node's subgraph attributes, nested ones included."""
    for attribute in node.attribute:
        for body in [attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else attribute.graphs:
            yield from all_nodes(body)


def names_read(graph: onnx.GraphProto) -> set[str]:
    """Every name any node reads, in the graph or in a body."""
    return {name for node in all_nodes(graph) for name in node.input}


def names_read_by_subgraphs(graph: onnx.GraphProto) -> list[str]:
    """Every input name of every node inside the bodies of the graph's nodes, nested ones included, in order."""
    return [name for node in graph.node for inner in nodes_in_bodies(node) for name in inner.input]
