"""The structure of an exported program's graph as the structural detectors see it: normalization layers, skip
connections, and the fewest weight layers a gradient must cross from the loss to the input."""

from __future__ import annotations

import torch

from worker.diagnosis.facts import Structure
from worker.engine.pt2.vocabulary import MERGE_OPS, NORMALIZATION_OPS, WEIGHT_OPS, op_name


def structure(graph: torch.fx.Graph) -> Structure | None:
    """The graph's structure; None if it cannot be walked (that only costs the structural findings)."""
    try:
        return _walk(graph)
    except Exception:
        return None


def _walk(graph: torch.fx.Graph) -> Structure:
    distance = {node: 0 for node in graph.find_nodes(op="placeholder")}
    counts = {"weights": 0, "norms": 0, "skips": 0}
    for node in graph.nodes:
        name = op_name(node)
        computed = [distance[n] for n in node.all_input_nodes if n in distance]
        weighted = name in WEIGHT_OPS
        counts["weights"] += weighted
        counts["norms"] += name in NORMALIZATION_OPS
        counts["skips"] += name in MERGE_OPS and len(computed) >= 2 and len(set(computed)) > 1
        if computed and node.op != "output":
            distance[node] = min(computed) + weighted
    output = next(iter(graph.find_nodes(op="output")))
    ends = [distance[n] for n in output.all_input_nodes if n in distance]
    return Structure(counts["weights"], counts["norms"], counts["skips"], min(ends) if ends else None)
