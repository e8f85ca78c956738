"""Fold the parts of an ONNX graph that do not depend on its inputs into initializers, before conversion."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

from worker.engine.onnx.graph import DEFAULT_DOMAINS, names_read

# Folding these would freeze one draw of a random source into a weight.
_NONDETERMINISTIC = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Bernoulli",
                     "Multinomial", "Dropout"}


def fold_constants(graph: onnx.GraphProto, opsets: dict[str, int]) -> None:
    """Replace every node whose inputs are all constants by initializers holding its outputs."""
    # Weights still in their file are weights of Conv, ConvTranspose, Gemm or MatMul: run at run time, not folded.
    known = {t.name: t for t in graph.initializer if t.data_location != onnx.TensorProto.EXTERNAL}
    protected = {o.name for o in graph.output}
    kept = []
    for node in graph.node:
        folded = _folded_outputs(node, known, protected, opsets)
        if folded is None:
            kept.append(node)
            continue
        for tensor in folded:
            graph.initializer.append(tensor)
            known[tensor.name] = graph.initializer[-1]  # the graph's own copy: the folded one can go
    _replace_nodes(graph, kept)
    drop_unused_initializers(graph)


def _folded_outputs(node: onnx.NodeProto, known: dict, protected: set[str],
                    opsets: dict[str, int]) -> list[onnx.TensorProto] | None:
    if not _foldable(node, known, protected):
        return None
    feeds = {name: numpy_helper.to_array(known[name]) for name in node.input if name}
    try:
        results = ReferenceEvaluator(node, opsets=opsets).run(None, feeds)
    except Exception:
        return None  # the converter may still handle it; the parity check has the last word
    if not all(isinstance(r, np.ndarray) for r in results):
        return None
    return [numpy_helper.from_array(np.asarray(r), name) for name, r in zip(node.output, results) if name]


def _foldable(node: onnx.NodeProto, known: dict, protected: set[str]) -> bool:
    if node.domain not in DEFAULT_DOMAINS or node.op_type in _NONDETERMINISTIC:
        return False
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
        return False
    # A graph output must stay a node output: the converter collects outputs from what nodes produced.
    if any(name in protected for name in node.output):
        return False
    return all(name in known for name in node.input if name)


def initializers_for_identities(graph: onnx.GraphProto) -> None:
    """Replace each Identity of an initializer by an initializer of its own under the Identity's output name.

    The legacy exporter stores parameters with equal values once (a fresh network's LayerNorm scales are all
    ones) and names the others as Identity nodes of that one; with do_constant_folding=False it routes every
    weight through an Identity. Either way each name is a parameter of the user's network with its own
    gradient, and the converter only gives a Conv or Gemm its weights when they are initializers. A copy of a
    reference to weights left in their file (wire.py) is a copy of the reference, not of the weights.
    """
    initializers = {t.name: t for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    routed = [n for n in graph.node
              if n.op_type == "Identity" and n.input[0] in initializers and n.output[0] not in outputs]
    for node in routed:
        add_initializer_copy(graph, initializers[node.input[0]], node.output[0])
    replaced = {node.output[0] for node in routed}
    _replace_nodes(graph, [n for n in graph.node if n.op_type != "Identity" or n.output[0] not in replaced])


def add_initializer_copy(graph: onnx.GraphProto, tensor: onnx.TensorProto, name: str) -> str:
    """Append a copy of tensor named `name` to the graph's initializers; return the name."""
    own = onnx.TensorProto()
    own.CopyFrom(tensor)
    own.name = name
    graph.initializer.append(own)
    return name


def drop_unused_initializers(graph: onnx.GraphProto) -> None:
    """Remove initializers no node, subgraph or graph output reads, and their graph.input entries."""
    used = names_read(graph) | {o.name for o in graph.output}
    unused = {t.name for t in graph.initializer} - used
    if not unused:
        return
    # Deleted in place: rebuilding the field would copy every weight once more.
    for field in (graph.initializer, graph.input):
        for index in reversed([i for i, item in enumerate(field) if item.name in unused]):
            del field[index]


def _replace_nodes(graph: onnx.GraphProto, nodes: list[onnx.NodeProto]) -> None:
    if len(nodes) == len(graph.node):
        return
    copies = [onnx.NodeProto() for _ in nodes]
    for copy_, node in zip(copies, nodes):
        copy_.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)
