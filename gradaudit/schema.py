"""The records that cross rooms, each defined once: a layer's statistics with its per-batch rows, the setup of
an audit, findings and recommendations. The SQL columns (models/tables.py), the OpenAPI schemas
(api/openapi.py) and the report (gradaudit/report.py) are derived from these definitions.

Plain Python only: the API, the database layer, the engine and the diagnosis all import this module.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, TypedDict

# An output counts as saturated where the activation's derivative is below this share of its peak.
SATURATION_SHARE = 0.01
# 1 - tanh(z)^2 < SATURATION_SHARE  <=>  |tanh(z)| > sqrt(1 - SATURATION_SHARE); sigmoid(x) = (1 + tanh(x/2)) / 2.
TANH_EDGE = math.sqrt(1.0 - SATURATION_SHARE)
SATURATION_RULE = (
    f"share of outputs where the derivative is below {SATURATION_SHARE:g} of its peak, judged from the output "
    f"value: |x| > {2 * math.atanh(TANH_EDGE):.2f} for Sigmoid, |x| > {math.atanh(TANH_EDGE):.2f} for Tanh"
)


class BatchRow(TypedDict):
    """One layer's output and the loss gradient with respect to it, on one probe batch (None: not finite or
    not measured)."""

    batch: int
    seed: int
    numel: int
    activation_mean: float | None
    activation_std: float | None
    activation_zero_fraction: float | None
    activation_saturated_fraction: float | None  # SATURATION_RULE; None where the layer is no Sigmoid/Tanh
    output_grad_norm: float | None
    output_grad_mean_abs: float | None
    output_grad_max_abs: float | None
    output_grad_zero_count: int | None
    output_grad_zero_fraction: float | None
    output_grad_nonfinite: int | None


BATCH_ROW_FIELDS: tuple[str, ...] = tuple(BatchRow.__annotations__)


@dataclass(frozen=True)
class LayerRecord:
    """Statistics of one layer: its parameters' gradients (zeros when it has none) and, per batch, its output."""

    name: str  # the layer's name in the uploaded network: ONNX node name / TorchScript module path
    kind: str  # its operator as the format names it: Conv, Gemm, Linear, LSTM, BatchNormalization, ...
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
    batch_rows: list[BatchRow] = field(default_factory=list)  # empty where the output could not be observed

    def as_dict(self) -> dict[str, Any]:
        """The layer as plain data: its statistics, then `batch_rows`."""
        return asdict(self)


LAYER_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(LayerRecord) if f.name != "batch_rows")

Severity = Literal["info", "warning", "critical"]
Verdict = Literal["healthy", "warning", "critical"]


class Recommendation(TypedDict):
    """One concrete change that addresses a finding."""

    code: str
    text: str


class Finding(TypedDict):
    """What the diagnosis saw, on which layers, with the numbers behind it and what to change."""

    code: str
    severity: Severity
    title: str
    layers: list[str]
    evidence: dict[str, Any]
    confidence: float
    recommendations: list[Recommendation]


class Setup(TypedDict, total=False):
    """How the audit probed the network: device, batches, loss, what was observed, parity with onnxruntime.

    Keys present depend on the format and the options (parity keys for ONNX only, training keys when
    options.train_steps > 0)."""

    device: str
    batch_size: int
    seed: int
    loss: str
    input_shapes: dict[str, list[int]]
    output: str
    mode: str
    batches: int
    batch_seeds: list[int]
    inputs: str
    opset: int | None
    conversion_warnings: list[str]
    loss_value: float | None
    batch_losses: list[float | None]
    parameter_gradients: str
    layer_outputs: str
    saturation: str
    output_statistics: str
    parity: str
    parity_max_abs_diff: float | None
    parity_tolerance: float | None
    parity_float64_max_abs_diff: float | None
    train_steps: int
    train_learning_rate: float
    train_losses: list[float | None]
