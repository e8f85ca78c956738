"""What the engine returns: plain data, no torch tensors, ready to be stored or printed."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class LayerStats:
    """Parameter-gradient statistics of one layer (a node or module that owns parameters)."""

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

    def as_dict(self) -> dict[str, Any]:
        """The layer as the report's JSON object."""
        return asdict(self)


@dataclass(frozen=True)
class EngineResult:
    """Everything one audit found: the network summary, how it was probed, layers, findings."""

    network: dict[str, Any]  # {"format", "parameters", "layers"}
    setup: dict[str, Any]  # {"device", "batch_size", "seed", "loss", "input_shapes"}
    layers: list[LayerStats]
    findings: list[dict[str, Any]] = field(default_factory=list)
    verdict: str = "healthy"  # healthy | warning | critical
