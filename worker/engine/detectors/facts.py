"""Facts the detectors read from the network itself rather than from the probe: weights and graph."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from worker.engine.detectors.graph import Structure, structure
from worker.engine.detectors.weights import RecurrenceFacts, WeightFacts, recurrences, weight_facts
from worker.engine.load import Layer


@dataclass(frozen=True)
class NetworkFacts:
    """Weight facts and plain recurrences by layer name, the graph's structure, and the probe's batch size."""

    weights: dict[str, WeightFacts] = field(default_factory=dict)
    recurrences: dict[str, RecurrenceFacts] = field(default_factory=dict)
    structure: Structure | None = None
    batch_size: int = 1


def network_facts(network, module: torch.nn.Module, layers: list[Layer],
                  inputs: dict[str, torch.Tensor]) -> NetworkFacts:
    """Everything the detectors read from the loaded network and one probe batch's inputs (no forward pass)."""
    batch_size = next((t.shape[0] for t in inputs.values() if t.dim()), 1)
    with torch.no_grad():
        return NetworkFacts(weight_facts(module, layers), recurrences(module, layers), structure(network),
                            max(1, int(batch_size)))
