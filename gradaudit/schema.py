"""The records that cross rooms, each defined once: a layer's statistics with its per-batch rows, the setup of
an audit, findings and recommendations. The SQL columns (models/tables.py), the OpenAPI schemas
(api/openapi.py) and the report (gradaudit/report.py) are derived from these definitions.

Plain Python only: the API, the database layer, the engine and the diagnosis all import this module.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, get_args, get_type_hints

from typing_extensions import (  # pydantic reads these for the OpenAPI schemas; typing's lack what it needs before 3.12
    NotRequired,
    TypedDict,
)

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

class OutputGradBatch(TypedDict):
    """One batch of a layer's output gradient, as the report shows it."""

    batch: int
    seed: int
    numel: int
    norm: float | None
    mean_abs: float | None
    max_abs: float | None
    zero_count: int | None
    zero_fraction: float | None
    nonfinite: int | None


class OutputGradSummary(TypedDict):
    """The loss gradient with respect to a layer's output over the probe batches: norm is the root mean square
    of the per-batch L2 norms, mean_abs their mean, max_abs the largest (each batch's the largest |g| of its sample,
    setup.output_statistics), counts are summed; a statistic is null where it is not finite."""

    norm: float | None
    mean_abs: float | None
    max_abs: float | None
    zero_count: int
    zero_fraction: float
    nonfinite: int
    batches: list[OutputGradBatch]


class ActivationBatch(TypedDict):
    """One batch of a layer's forward output, as the report shows it."""

    batch: int
    seed: int
    numel: int
    mean: float | None
    std: float | None
    zero_fraction: float | None
    saturated_fraction: float | None


class ActivationSummary(TypedDict):
    """A layer's forward output over every element of every probe batch: mean, std, share exactly zero, and
    for Sigmoid/Tanh the share where the derivative is below 1% of its peak (SATURATION_RULE), else null."""

    mean: float | None
    std: float | None
    zero_fraction: float | None
    saturated_fraction: float | None
    batches: list[ActivationBatch]


def output_grad_summary(rows: list[BatchRow]) -> OutputGradSummary | None:
    """The output-gradient summary of a layer's batch rows; None where backward never reached the output."""
    reached = [row for row in rows if row.get("output_grad_zero_count") is not None]
    if not reached:
        return None
    zeros = sum(row["output_grad_zero_count"] for row in reached)
    return {
        "norm": _rms([row["output_grad_norm"] for row in reached]),
        "mean_abs": _mean([row["output_grad_mean_abs"] for row in reached]),
        "max_abs": _max([row["output_grad_max_abs"] for row in reached]),
        "zero_count": zeros,
        "zero_fraction": zeros / sum(row["numel"] for row in reached),
        "nonfinite": sum(row["output_grad_nonfinite"] for row in reached),
        "batches": [_batch(row, "output_grad_") for row in reached],
    }


def activation_summary(rows: list[BatchRow]) -> ActivationSummary | None:
    """The forward-output summary of a layer's batch rows; None where the output was not observed."""
    if not rows:
        return None
    mean = weighted_mean(rows, "activation_mean")
    squares = weighted_mean(rows, "activation_std", lambda row: row["activation_std"] ** 2 + row["activation_mean"] ** 2)
    return {
        "mean": mean,
        "std": math.sqrt(max(squares - mean ** 2, 0.0)) if None not in (mean, squares) else None,
        "zero_fraction": weighted_mean(rows, "activation_zero_fraction"),
        "saturated_fraction": weighted_mean(rows, "activation_saturated_fraction"),
        "batches": [_batch(row, "activation_") for row in rows],
    }


def weighted_mean(rows: list[BatchRow], key: str, value=None) -> float | None:
    """The element-weighted mean of a per-batch value; None if any batch lacks it (not finite, not measured)."""
    if any(row.get(key) is None or (value and row.get("activation_mean") is None) for row in rows):
        return None
    pick = value or (lambda row: row[key])
    return sum(row["numel"] * pick(row) for row in rows) / sum(row["numel"] for row in rows)


def _batch(row: BatchRow, prefix: str) -> dict[str, Any]:
    values = {key[len(prefix):]: value for key, value in row.items() if key.startswith(prefix)}
    return {"batch": row["batch"], "seed": row["seed"], "numel": row["numel"], **values}


def _rms(values: list[float | None]) -> float | None:
    return math.sqrt(sum(v * v for v in values) / len(values)) if None not in values else None


def _mean(values: list[float | None]) -> float | None:
    return sum(values) / len(values) if None not in values else None


def _max(values: list[float | None]) -> float | None:
    return max(values) if None not in values else None


Severity = Literal["info", "warning", "critical"]
Verdict = Literal["healthy", "warning", "critical"]

# Every code the diagnosis (worker/diagnosis) gives a finding, root causes before the symptoms they explain: the
# report lists findings in this order, so its first recommendation is the first finding's first.
FINDING_CODES = (
    "nonfinite_values", "poor_initialization", "dead_relu", "saturated_activation", "recurrent_long_range",
    "vanishing_gradient", "missing_normalization", "exploding_gradient", "deep_plain_stack",
)


VerificationStatus = Literal["resolved", "improved", "no_effect", "worse", "not_applicable"]

# Where a running audit is, in the order an audit goes through them (a format skips those it has no use for:
# only ONNX checks parity with onnxruntime and converts). The worker stores the latest in audits.phase.
Phase = Literal["loading", "checking_parity", "converting", "probing", "diagnosing", "verifying"]
PHASES: tuple[str, ...] = get_args(Phase)


class PatchedNetwork(TypedDict):
    """A patched copy of the network, kept as an ONNX file: in the service an artifact, named by its sha256 and
    downloaded from GET /v1/audits/{id}/remedies/{code}/network; from `gradaudit audit --write-fixes DIR`, a
    file in DIR."""

    format: Literal["onnx"]
    size: int
    sha256: NotRequired[str]
    file: NotRequired[str]


class TrainingCurves(TypedDict):
    """The loss of the original and of the patched copy (for clip_gradients: trained with clipping) over the same
    steps from the same weights; a loss is null where it was not finite."""

    steps: int
    loss_original: list[float | None]
    loss_patched: list[float | None]
    max_norm: NotRequired[float]  # clip_gradients only


class Verification(TypedDict):
    """What applying one recommendation to a copy of the network and probing the copy with the audit's own
    options measured: the finding's metric before and after, and the findings (code:severity, warning and
    above) the copy still has. `reason` says why where the status is not_applicable."""

    status: VerificationStatus
    metric: str | None
    before: float | None
    after: float | None
    findings_after: list[str]
    training: TrainingCurves | None
    seconds: float
    reason: NotRequired[str]


class Recommendation(TypedDict):
    """One concrete change that addresses a finding; where remedies were verified, with the patch made to a copy
    of the network, what that changed, and the patched network where one was kept."""

    code: str
    text: str
    layers: NotRequired[list[str]]  # the layers it changes, by their names in the report
    edit: NotRequired[dict[str, Any]]  # the edit's parameters (worker/remedies)
    patch: NotRequired[str | None]  # the change made, in words; null where none could be made
    verification: NotRequired[Verification]
    network: NotRequired[PatchedNetwork]


class Finding(TypedDict):
    """What the diagnosis saw, on which layers, with the numbers behind it and what to change."""

    code: str
    severity: Severity
    title: str
    layers: list[str]
    evidence: dict[str, Any]
    confidence: float
    recommendations: list[Recommendation]


class Training(TypedDict):
    """The brief training run before the probe (options.train_steps > 0)."""

    steps: int
    optimizer: str
    learning_rate: float
    batches: str
    first_loss: float | None
    last_loss: float | None
    update_to_weight: float | None


class RemedyTraining(TypedDict):
    """How the original and each patched copy were trained for comparison (options.verify_steps)."""

    steps: int
    optimizer: str
    learning_rate: float
    parameter_budget: int
    task: str


class RemediesSetup(TypedDict):
    """Whether the recommendations were verified (`reason` says why not), how many, and how the copy to edit was
    obtained (`route`)."""

    verified: bool
    reason: NotRequired[str]
    verified_recommendations: NotRequired[int]
    max_verified_recommendations: NotRequired[int]  # GRADAUDIT_MAX_VERIFIED_REMEDIES
    route: NotRequired[str]
    training: NotRequired[RemedyTraining | None]


class Setup(TypedDict, total=False):
    """How the audit probed the network: device, batches, loss, what was observed, and for ONNX the parity
    with onnxruntime (those keys for ONNX only; `training` only when options.train_steps > 0)."""

    device: str
    batch_size: int
    seed: int
    loss: str
    input_shapes: dict[str, list[int]]
    output: str
    mode: str
    batches: int
    seeds: list[int]
    inputs: str | dict[str, str]  # the .npz, or per input the rule its synthetic values follow
    opset: int | None
    conversion_warnings: list[str]
    loss_value: float | None
    batch_losses: list[float | None]
    parameter_gradients: str
    layer_outputs: str
    saturation: str
    output_statistics: str
    onnxruntime_max_abs_diff: float | None
    onnxruntime_tolerance: float | None
    onnxruntime_error: str | None
    float32_rounding_sensitivity: float | None
    onnxruntime_parity: str
    training: Training
    normalization_mode: Literal["none", "batch", "running", "mixed"]  # BatchNorm statistics during the probe
    normalization_option: str
    normalization_rule: str
    normalization_layers: dict[str, list[str]]  # batch_statistics / running_statistics: layer names
    restored_batch_norms: list[str]  # ONNX: BatchNorms the exporter folded away, restored (onnx/folded.py)
    restored_batch_norms_rule: str
    time_limit_s: float  # the audit's wall-clock limit (GRADAUDIT_SOFT_TIME_LIMIT_S)
    memory_limit_mb: int  # the memory its process could add (GRADAUDIT_AUDIT_MEMORY_MB)
    sandbox: list[str]  # the confinement its process ran under (worker/sandbox)
    remedies: RemediesSetup  # worker/remedies
    phase_seconds: dict[Phase, float]  # wall-clock seconds the audit spent in each phase it went through


class CombinedFix(TypedDict):
    """A recommendation in the combined patch."""

    finding: str
    code: str


class SkippedFix(CombinedFix):
    """A best fix left out of the combined patch, and why (an earlier edit changed its layers)."""

    reason: str


class CombinedVerification(TypedDict):
    """What the combined patch changed: the verdict and the findings (code:severity) before and after; where it
    could not be made or audited, status not_applicable and the reason alone."""

    status: VerificationStatus
    seconds: float
    verdict_before: NotRequired[Verdict]
    verdict_after: NotRequired[Verdict]
    findings_before: NotRequired[list[str]]
    findings_after: NotRequired[list[str]]
    training: NotRequired[TrainingCurves | None]
    reason: NotRequired[str]


class CombinedPatch(TypedDict):
    """The best verified graph edit of every finding (resolved or improved), applied together to one copy."""

    recommendations: list[CombinedFix]
    skipped: list[SkippedFix]
    patch: str | None
    verification: CombinedVerification
    network: NotRequired[PatchedNetwork]


class NetworkSummary(TypedDict, total=False):
    """What the report says of the uploaded network as a whole."""

    format: str
    parameters: int
    layers: int
    sha256: str


# A layer as the report shows it: a LayerRecord's statistics, its batch rows summarised.
ReportLayer = TypedDict("ReportLayer", {
    **{name: hint for name, hint in get_type_hints(LayerRecord).items() if name != "batch_rows"},
    "output_grad": OutputGradSummary | None,
    "activation": ActivationSummary | None,
})


class Report(TypedDict):
    """The report of a succeeded audit (report_version 1)."""

    id: str | None
    status: Literal["succeeded"]
    report_version: int
    network: NetworkSummary
    setup: Setup
    layers: list[ReportLayer]
    findings: list[Finding]
    verdict: Verdict
    combined: CombinedPatch | None  # null where remedies were not verified or none resolved or improved a finding
