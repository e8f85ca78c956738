"""missing_normalization and deep_plain_stack: the graph's structure, read together with the probe."""

from __future__ import annotations

from worker.diagnosis.common import Context, finding, span
from worker.diagnosis.trend import activation_trend, gradient_trend

DEEP_PLAIN = 20  # weight layers on the shortest gradient path; He et al. 2016 see plain nets degrade from ~20
# On such a path, a gradient change this large already marks the stack, even under the vanishing/exploding
# thresholds: BatchNorm keeps activations in scale but still lets the gradient grow geometrically with depth
# (Yang et al. 2019), so a normalised plain stack drifts slowly rather than collapsing.
DEEP_PLAIN_DECADES = 1.0
DRIFT_DECADES = 1.0  # forward activation scale drifting this much over depth, with nothing to rescale it
MIN_WEIGHT_LAYERS = 6
_EXPLAINING = ("poor_initialization", "dead_relu", "saturated_activation")
_CAUSES = _EXPLAINING + ("recurrent_long_range", "missing_normalization", "nonfinite_values")
_TRENDS = ("vanishing_gradient", "exploding_gradient")


def detect_missing_normalization(ctx: Context, found: list[dict]) -> list[dict]:
    """No normalization anywhere while the activation scale drifts with depth and the init does not explain it."""
    structure = ctx.facts.structure
    if structure is None or structure.normalizations or not structure.skips or len(ctx.weights) < MIN_WEIGHT_LAYERS:
        return []
    if any(f["code"] in _EXPLAINING for f in found):
        return []
    activations = activation_trend(ctx.weights)
    drift = -activations.change_decades if activations else 0.0
    if abs(drift) < DRIFT_DECADES:
        return []
    title = (f"No normalization layer: over {len(ctx.weights)} weight layers and {structure.skips} residual "
             f"additions the activation scale {'grows' if drift > 0 else 'shrinks'} {abs(drift):.1f} decades; "
             "each addition adds a branch of full scale and nothing rescales the sum")
    evidence = {"normalization_layers": 0, "residual_additions": structure.skips,
                "activation_drift_decades": round(drift, 3), "activation": activations.evidence()}
    return [finding("missing_normalization", "warning", title, activations.names, evidence,
                    0.5 + min(0.4, abs(drift) / 5))]


def detect_deep_plain_stack(ctx: Context, found: list[dict]) -> list[dict]:
    """A gradient path through DEEP_PLAIN or more weight layers with no skip around any of them, whose gradient
    vanishes or explodes with no other cause (initialisation, dead or saturated units, sigmoid/tanh) to blame."""
    structure = ctx.facts.structure
    # Plain in He et al.'s sense: no shortcut anywhere. A network with skips (MobileNetV2's inverted residuals)
    # may still have a long shortest path, but no stack of DEEP_PLAIN layers that nothing bypasses.
    if structure is None or structure.skips or structure.shortest_path is None or structure.shortest_path < DEEP_PLAIN:
        return []
    trend = next((f for f in found if f["code"] in _TRENDS and f["severity"] != "info"), None)
    if any(f["code"] in _CAUSES for f in found) or (trend and _squashing_vanishing(ctx, trend)):
        return []
    fitted = gradient_trend(ctx.weights)
    change = fitted.change_decades if fitted else None
    if trend is None and (change is None or abs(change) < DEEP_PLAIN_DECADES):
        return []
    names = [s.name for s in ctx.weights]
    title = (f"Deep plain stack: the gradient must cross {structure.shortest_path} weight layers "
             f"({span(names)}) with no skip connection around any of them, and it changes {abs(change):.1f} "
             "decades on the way although each layer is initialised in scale")
    evidence = {"shortest_gradient_path_weight_layers": structure.shortest_path,
                "residual_additions": structure.skips, "normalization_layers": structure.normalizations,
                "gradient_fitted_change_decades": None if change is None else round(change, 3),
                "threshold": DEEP_PLAIN}
    severity = trend["severity"] if trend else "warning"
    return [finding("deep_plain_stack", severity, title, names, evidence,
                    0.6 + min(0.35, (structure.shortest_path - DEEP_PLAIN) / 40))]


def _squashing_vanishing(ctx: Context, trend: dict) -> bool:
    """A vanishing gradient through sigmoid/tanh layers is theirs to answer for, not the stack's."""
    return trend["code"] == "vanishing_gradient" and any(
        ctx.activation_after(s.name) in ("sigmoid", "tanh") for s in ctx.weights)
