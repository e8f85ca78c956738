"""The structure of a TorchScript graph (inlined) as the structural detectors see it: normalization layers,
skip connections, and the fewest weight layers a gradient must cross from the loss to the input."""

from __future__ import annotations

import torch

from worker.diagnosis.facts import Structure
from worker.engine.torchscript.vocabulary import MERGE_OPS, NORMALIZATION_OPS, WEIGHT_OPS


def structure(graph: torch._C.Graph) -> Structure | None:
    """The graph's structure; None if it cannot be walked (that only costs the structural findings)."""
    try:
        return _walk(graph)
    except Exception:
        return None


def _walk(graph: torch._C.Graph) -> Structure:
    distance = {value.debugName(): 0 for value in list(graph.inputs())[1:] if _is_tensor(value)}
    counts = {"weights": 0, "norms": 0, "skips": 0}
    for node in graph.nodes():
        kind = node.kind()
        computed = [distance[v.debugName()] for v in node.inputs() if v.debugName() in distance]
        weighted = kind in WEIGHT_OPS
        counts["weights"] += weighted
        counts["norms"] += kind in NORMALIZATION_OPS
        counts["skips"] += kind in MERGE_OPS and len(computed) >= 2 and len(set(computed)) > 1
        if computed:
            for output in node.outputs():
                distance[output.debugName()] = min(computed) + weighted
    ends = [distance[v.debugName()] for v in graph.outputs() if v.debugName() in distance]
    return Structure(counts["weights"], counts["norms"], counts["skips"], min(ends) if ends else None)


def _is_tensor(value: torch._C.Value) -> bool:
    return isinstance(value.type(), torch._C.TensorType)
