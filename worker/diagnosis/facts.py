"""What the diagnosis reads, as plain numbers: the engine measures, this module only says what it hands over.

Nothing here holds a tensor or a graph, so a diagnosis can run from stored rows, and its tests build facts
directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gradaudit.schema import LayerRecord

# A layer's normalised role, whatever its format calls the operator.
WEIGHT, ACTIVATION, NORMALIZATION, MERGE, LAYOUT, RECURRENT, OTHER = (
    "weight", "activation", "normalization", "merge", "layout", "recurrent", "other")
# Recurrences: plain (tanh/sigmoid) ones are the problem; LSTM and GRU are the fix.
PLAIN, GATED = "plain", "gated"


@dataclass(frozen=True)
class LayerRole:
    """What a layer does: its role and, for activations, the function (relu, tanh, ...), for recurrences
    PLAIN or GATED."""

    role: str = OTHER
    function: str | None = None


@dataclass(frozen=True)
class WeightFacts:
    """One weight layer's main matrix: its fan-in, RMS, whether every entry is equal, its bias mean."""

    fan_in: int
    rms: float
    constant: bool
    bias_mean: float | None


@dataclass(frozen=True)
class RecurrenceFacts:
    """A plain recurrence run over the probe's sequence length on its own matrices: log10 of the mean norm of
    dL/dh_t, from the last time step back to the first (empty for sequences shorter than the fit needs)."""

    sequence_length: int
    log_gradient_norms: list[float]


@dataclass(frozen=True)
class Structure:
    """Counts read from the graph; shortest_path is None where no weight layer lies between input and loss."""

    weight_ops: int
    normalizations: int
    skips: int  # additions of two computed tensors (residual connections)
    shortest_path: int | None


@dataclass(frozen=True)
class NetworkFacts:
    """Everything one diagnosis reads: the layers with their per-batch rows, each layer's role, the loss, and
    what the engine read from the weights and the graph."""

    layers: list[LayerRecord] = field(default_factory=list)
    roles: dict[str, LayerRole] = field(default_factory=dict)  # by layer name
    loss_finite: bool = True
    op_counts: dict[str, int] = field(default_factory=dict)  # normalised op names: {"sigmoid": 11}
    weight_nonfinite: dict[str, int] = field(default_factory=dict)  # non-finite weight entries by layer
    weights: dict[str, WeightFacts] = field(default_factory=dict)
    recurrences: dict[str, RecurrenceFacts] = field(default_factory=dict)
    structure: Structure | None = None
    batch_size: int = 1

    def role(self, name: str) -> LayerRole:
        """The role of layer `name` (OTHER when the engine gave none)."""
        return self.roles.get(name, _OTHER)


_OTHER = LayerRole()
