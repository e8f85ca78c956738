"""The structure of a converted ONNX graph as the structural detectors see it: normalization layers, skip
connections, and the fewest weight layers a gradient must cross from the loss to the input (a plain stack
crosses all of them)."""

from __future__ import annotations

import onnx

from worker.diagnosis.facts import Structure
from worker.engine.onnx.vocabulary import NORMALIZATION_OPS, WEIGHT_OPS

_MERGES = frozenset({"Add", "Sum"})


def structure(graph: onnx.GraphProto) -> Structure | None:
    """The graph's structure; None if it cannot be walked (that only costs the structural findings)."""
    try:
        return _walk(graph)
    except Exception:
        return None


def _walk(graph: onnx.GraphProto) -> Structure:
    constants = {i.name for i in graph.initializer}
    constants |= {o for n in graph.node if n.op_type in ("Constant", "ConstantOfShape") for o in n.output}
    distance = {i.name: 0 for i in graph.input if i.name not in constants}
    counts = {"weights": 0, "norms": 0, "skips": 0}
    for node in graph.node:
        computed = [distance[i] for i in node.input if i in distance]
        weighted = node.op_type in WEIGHT_OPS and (node.op_type != "MatMul" or len(computed) == 1)
        counts["weights"] += weighted
        counts["norms"] += node.op_type in NORMALIZATION_OPS
        counts["skips"] += node.op_type in _MERGES and len(computed) >= 2 and len(set(computed)) > 1
        if computed:
            for output in node.output:
                distance[output] = min(computed) + weighted
    ends = [distance[o.name] for o in graph.output if o.name in distance]
    return Structure(counts["weights"], counts["norms"], counts["skips"], min(ends) if ends else None)
