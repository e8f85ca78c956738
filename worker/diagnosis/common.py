"""What every detector reads (Context) and the shape of a finding."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gradaudit.schema import LayerRecord
from worker.diagnosis.facts import ACTIVATION, MERGE, NORMALIZATION, NetworkFacts

SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
_OP_COUNT_ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid", "gelu", "elu")


@dataclass(frozen=True)
class Context:
    """Every layer (input side first), the weight layers among them, and the facts the engine measured."""

    layers: list[LayerRecord]
    weights: list[LayerRecord]
    facts: NetworkFacts = field(default_factory=NetworkFacts)

    @property
    def loss_finite(self) -> bool:
        """Whether every probe batch's loss was finite."""
        return self.facts.loss_finite

    @property
    def op_counts(self) -> dict[str, int]:
        """Telling operators in the whole graph, by normalised name."""
        return self.facts.op_counts

    @property
    def weight_nonfinite(self) -> dict[str, int]:
        """Non-finite weight entries by layer, where there are any."""
        return self.facts.weight_nonfinite

    def activation_after(self, name: str) -> str:
        """The activation that follows weight layer `name` (normalization skipped), else the network's only one."""
        names = [s.name for s in self.layers]
        for s in self.layers[names.index(name) + 1:] if name in names else []:
            role = self.facts.role(s.name)
            if role.role == ACTIVATION:
                return role.function
            if s.parameters and role.role != NORMALIZATION:
                break
        used = [op for op in _OP_COUNT_ACTIVATIONS if self.op_counts.get(op)]
        return used[0] if len(used) == 1 and not self._has_activation_layers() else "linear"

    def _has_activation_layers(self) -> bool:
        return any(self.facts.role(s.name).role == ACTIVATION for s in self.layers)

    def normalised(self) -> set[str]:
        """Weight layers whose output a normalization layer takes next (a BatchNorm after its convolution, or
        after its ReLU: both scale alike), so that their weights' scale changes nothing downstream."""
        names, previous = set(), None
        for s in self.layers:
            role = self.facts.role(s.name).role
            if role == NORMALIZATION and previous is not None:
                names.add(previous)
                previous = None
            elif s.parameters or role == MERGE:
                previous = s.name if s.parameters else None  # a sum with a skip is not scale-invariant
        return names

    def weight_before(self, name: str) -> LayerRecord | None:
        """The nearest weight layer before layer `name`."""
        before = None
        for s in self.layers:
            if s.name == name:
                return before
            if s.parameters:
                before = s
        return None


def finding(code: str, severity: str, title: str, layers: list[str], evidence: dict[str, Any],
            confidence: float) -> dict[str, Any]:
    """A finding as the report stores it; recommendations are added by recommendations.py."""
    return {"code": code, "severity": severity, "title": title, "layers": layers, "evidence": evidence,
            "confidence": round(max(0.05, min(1.0, confidence)), 2), "recommendations": []}


def span(names: list[str]) -> str:
    """'layer a' or 'layers a to b' (a report names the layers it talks about)."""
    if not names:
        return "the network"
    return f"layer '{names[0]}'" if len(names) == 1 else f"layers '{names[0]}' to '{names[-1]}'"


def batch_values(stats: LayerRecord, key: str) -> list[float]:
    """The finite values of one probe column of a layer, one per batch."""
    return [row[key] for row in stats.batch_rows if row.get(key) is not None]
