"""Findings and a verdict from the measured numbers; each finding says what it saw and what to change."""

from __future__ import annotations

import statistics
from dataclasses import replace
from typing import Any

from worker.engine.result import LayerStats
from worker.engine.trend import GradientTrend, fit_trend

FINDING_CODES = (
    "vanishing_gradient", "exploding_gradient", "dead_relu", "saturated_activation", "poor_initialization",
    "missing_normalization", "deep_plain_stack", "recurrent_long_range", "nonfinite_values",
)
RECOMMENDATION_CODES = (
    "use_relu", "use_leaky_relu", "add_batch_norm", "add_layer_norm", "add_skip_connections", "reinit_he",
    "reinit_xavier", "reinit_orthogonal", "clip_gradients", "use_lstm_or_gru", "reduce_depth",
)
_SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
_NORMALIZATION_OPS = ("batch_norm", "layer_norm", "instance_norm", "group_norm")
# Fitted change, in decades, between the output-end and input-end gradient RMS.
WARNING_DECADES, CRITICAL_DECADES = 3.0, 6.0
# clip_grad_norm_ suggestion: this many times the median per-layer gradient norm seen in the probe.
CLIP_FACTOR = 5.0


def diagnose(
    layers: list[LayerStats], *, loss_finite: bool, op_counts: dict[str, int], weight_nonfinite: dict[str, int]
) -> list[dict[str, Any]]:
    """All findings for one probe, worst first."""
    layers = weight_layers(layers)
    findings = [_nonfinite(layers, loss_finite, weight_nonfinite)]
    if loss_finite:
        findings.append(_trend_finding(layers, op_counts))
    present = [f for f in findings if f is not None]
    return sorted(present, key=lambda f: -_SEVERITY_RANK[f["severity"]])


def weight_layers(layers: list[LayerStats]) -> list[LayerStats]:
    """The layers with parameters, depth renumbered 0, 1, ... so the trend's slope is per weight layer."""
    owning = sorted((s for s in layers if s.parameters > 0), key=lambda s: s.depth)
    return [replace(s, depth=depth) for depth, s in enumerate(owning)]


def verdict(findings: list[dict[str, Any]]) -> str:
    """The worst severity among findings; 'healthy' when none is a warning or critical."""
    worst = max((_SEVERITY_RANK[f["severity"]] for f in findings), default=0)
    return {0: "healthy", 1: "warning", 2: "critical"}[worst]


def _finding(code: str, severity: str, title: str, layers: list[str], evidence: dict, recommendations: list) -> dict:
    return {"code": code, "severity": severity, "title": title, "layers": layers,
            "evidence": evidence, "recommendations": recommendations}


def _recommendation(code: str, text: str) -> dict[str, str]:
    return {"code": code, "text": text}


def _nonfinite(layers: list[LayerStats], loss_finite: bool, weight_nonfinite: dict[str, int]) -> dict | None:
    # Backward runs from the output, so the deepest affected layer is where NaN/Inf first show up.
    affected = sorted((s for s in layers if s.grad_nonfinite or s.name in weight_nonfinite), key=lambda s: -s.depth)
    if loss_finite and not affected:
        return None
    names = [s.name for s in affected]
    evidence = {
        "loss_finite": loss_finite,
        "first_layer": names[0] if names else None,
        "first_layer_rule": "layers are listed in backward order (output to input); the first is nearest the output",
        "nonfinite_gradient_entries": sum(s.grad_nonfinite for s in affected),
        "nonfinite_weight_entries": sum(weight_nonfinite.values()),
        "layers_affected": len(names),
    }
    title = "NaN or Inf in the loss or gradients" + (f", first at layer '{names[0]}'" if names else "")
    return _finding("nonfinite_values", "critical", title, names, evidence, _nonfinite_advice(weight_nonfinite))


def _nonfinite_advice(weight_nonfinite: dict[str, int]) -> list[dict[str, str]]:
    advice = []
    if weight_nonfinite:
        advice.append(_recommendation("reinit_xavier", (
            f"Weights of {sorted(weight_nonfinite)} already hold NaN/Inf: re-initialize them "
            "(torch.nn.init.xavier_uniform_) or restore a checkpoint from before training diverged.")))
    advice.append(_recommendation("clip_gradients", (
        "Look for operations that produce NaN/Inf on this batch (log or sqrt of non-positive values, division by "
        "zero, exp overflow) and guard them (clamp, add an epsilon); clip gradients with "
        "torch.nn.utils.clip_grad_norm_ so one bad step cannot blow the weights up.")))
    return advice


def _trend_finding(layers: list[LayerStats], op_counts: dict[str, int]) -> dict | None:
    trend = fit_trend(layers)
    if trend is None or abs(trend.change_decades) < WARNING_DECADES:
        return None
    severity = "critical" if abs(trend.change_decades) >= CRITICAL_DECADES else "warning"
    decades = abs(trend.change_decades)
    if trend.change_decades < 0:
        title = f"Vanishing gradients: input-side layers get {decades:.1f} decades less gradient than output-side"
        return _finding("vanishing_gradient", severity, title, trend.affected, trend.evidence(),
                        _vanishing_advice(trend, layers, op_counts))
    title = f"Exploding gradients: input-side layers get {decades:.1f} decades more gradient than output-side"
    return _finding("exploding_gradient", severity, title, trend.affected, trend.evidence(),
                    _exploding_advice(trend, layers, op_counts))


def _span(trend: GradientTrend) -> str:
    first, last = trend.affected[0], trend.affected[-1]
    return f"layer '{first}'" if first == last else f"layers '{first}' to '{last}'"


def _vanishing_advice(trend: GradientTrend, layers: list[LayerStats], op_counts: dict[str, int]) -> list[dict]:
    advice = []
    squashing = op_counts.get("sigmoid", 0) + op_counts.get("tanh", 0)
    if squashing:
        advice.append(_recommendation("use_relu", (
            f"The network uses {squashing} sigmoid/tanh activations, whose derivative is at most 0.25 (sigmoid) or 1 "
            f"(tanh) and shrinks the gradient at every layer; use ReLU in the hidden layers around {_span(trend)}.")))
    if not any(op_counts.get(op) for op in _NORMALIZATION_OPS):
        advice.append(_recommendation("add_batch_norm", (
            f"No normalization layer was found; add BatchNorm after each of the {len(layers)} weight layers "
            "(before the activation) so pre-activations stay where the activation's derivative is not small.")))
    advice.append(_recommendation("add_skip_connections", (
        f"Add residual connections (x + f(x)) around blocks of the stack so the gradient reaches {_span(trend)} "
        f"without passing through every layer; it currently falls {trend.slope:.2f} decades per layer.")))
    advice.append(_recommendation("reinit_he", (
        f"Initialize {_span(trend)} with He/Kaiming (torch.nn.init.kaiming_normal_(w, nonlinearity='relu')) "
        "so each layer keeps the gradient's scale.")))
    return advice


def _exploding_advice(trend: GradientTrend, layers: list[LayerStats], op_counts: dict[str, int]) -> list[dict]:
    median = statistics.median(s.grad_norm for s in layers)
    max_norm = float(f"{CLIP_FACTOR * median:.2g}")
    squashing = op_counts.get("sigmoid", 0) + op_counts.get("tanh", 0)
    init = ("reinit_xavier", "Xavier/Glorot (torch.nn.init.xavier_uniform_)") if squashing else (
        "reinit_he", "He/Kaiming (torch.nn.init.kaiming_normal_)")
    advice = [
        _recommendation("clip_gradients", (
            f"Clip the total gradient norm with torch.nn.utils.clip_grad_norm_(parameters, max_norm={max_norm:g}); "
            f"that is {CLIP_FACTOR:g}x the median per-layer gradient norm measured here ({median:.3g}) "
            "under this loss.")),
        _recommendation(init[0], (
            f"Re-initialize {_span(trend)} with {init[1]} so each layer's gain is about 1; "
            f"now the gradient grows {abs(trend.slope):.2f} decades per layer toward the input.")),
    ]
    if not any(op_counts.get(op) for op in _NORMALIZATION_OPS):
        advice.append(_recommendation("add_batch_norm", (
            "No normalization layer was found; add BatchNorm after the weight layers to bound activation scale.")))
    return advice

