"""What the engine returns: plain data, no torch tensors, ready to be stored or printed."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


PROBE_FIELDS = (
    "batch", "seed", "numel", "activation_mean", "activation_std", "activation_zero_fraction",
    "activation_saturated_fraction", "output_grad_norm", "output_grad_mean_abs", "output_grad_max_abs",
    "output_grad_zero_count", "output_grad_zero_fraction", "output_grad_nonfinite",
)


@dataclass(frozen=True)
class LayerStats:
    """Statistics of one layer: its parameters' gradients (zeros when it has none) and, per batch, its output."""

    name: str  # the layer's name in the uploaded network: ONNX node name / TorchScript module path
    kind: str  # its operator: Conv, Gemm, Linear, LSTM, BatchNormalization, ...
    depth: int  # position from input (0) to output
    parameters: int
    weight_norm: float
    grad_norm: float
    grad_mean_abs: float
    grad_std: float
    grad_max_abs: float
    grad_zero_fraction: float
    grad_nonfinite: int
    grad_to_weight: float
    # Per probe batch: statistics of the layer's output and of the loss gradient with respect to it
    # (keys: PROBE_FIELDS); empty where the output could not be observed.
    probes: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The layer as plain data: the v1 fields, then `probes`, the per-batch rows."""
        return asdict(self)


@dataclass(frozen=True)
class EngineResult:
    """Everything one audit found: the network summary, how it was probed, layers, findings."""

    network: dict[str, Any]  # {"format", "parameters", "layers"}
    setup: dict[str, Any]  # {"device", "batch_size", "seed", "loss", "input_shapes"}
    layers: list[LayerStats]
    findings: list[dict[str, Any]] = field(default_factory=list)
    verdict: str = "healthy"  # healthy | warning | critical
