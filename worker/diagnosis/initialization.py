"""poor_initialization: weights whose scale is off the He/Xavier expectation for their fan-in and activation,
when that scale explains what the probe saw; constant or zero weights (symmetric units) in any case."""

from __future__ import annotations

import math

from worker.diagnosis.common import Context, finding, span
from worker.diagnosis.trend import activation_trend

# Weight RMS expected for fan-in n: gain / sqrt(n) (He for ReLU-like, LeCun/Xavier otherwise).
GAINS = {"relu": math.sqrt(2.0), "leaky_relu": math.sqrt(2.0), "gelu": math.sqrt(2.0), "elu": math.sqrt(2.0),
         "silu": math.sqrt(2.0), "hardswish": math.sqrt(2.0), "selu": 1.0, "tanh": 1.0, "sigmoid": 1.0, "linear": 1.0}
LARGE = 2.0  # weight RMS at least this many times the expectation saturates a squashing activation
EXPLAINED = 0.5  # init explains a trend when it predicts at least this share of the fitted change
# The same per-layer weight-scale factor multiplies the forward activation variance and the backward gradient
# variance, so weights that drive the gradient also move the forward signal: some weight layer's output RMS must
# at least double (or halve, for a vanishing prediction) from the first one's. Not the fitted forward drift:
# biases hold a shrinking forward signal at a floor that the gradient never sees.
FORWARD_MOVED = math.log10(2.0)


def scale_ratios(ctx: Context) -> list[tuple[str, float, str]]:
    """(layer, weight RMS / expected RMS, following activation) for each weight layer with weight facts whose
    output is not normalised next."""
    ratios, normalised = [], ctx.normalised()
    for s in ctx.weights:
        facts = ctx.facts.weights.get(s.name)
        # A normalization after the layer divides its weights' scale out of everything downstream.
        if facts and facts.fan_in and not facts.constant and s.name not in normalised:
            activation = ctx.activation_after(s.name)
            ratios.append((s.name, facts.rms / (GAINS.get(activation, 1.0) / math.sqrt(facts.fan_in)), activation))
    return ratios


def detect(ctx: Context, found: list[dict]) -> list[dict]:
    """Symmetric weights first (critical); else a scale that explains a trend or saturation (warning)."""
    symmetric = _symmetric(ctx)
    if symmetric:
        return [symmetric]
    by_code = {f["code"]: f for f in found}
    ratios = scale_ratios(ctx)
    return [f for f in (_explains_trend(ratios, by_code, ctx), _saturating(ratios, by_code)) if f][:1]


def _symmetric(ctx: Context) -> dict | None:
    """Two consecutive weight layers with every weight equal: their units stay identical under training."""
    constant = [s.name for s in ctx.weights if (f := ctx.facts.weights.get(s.name)) and f.constant]
    order = [s.name for s in ctx.weights if s.name in ctx.facts.weights]
    pairs = [a for a, b in zip(order, order[1:]) if a in constant and b in constant]
    if not pairs:
        return None
    values = {name: ctx.facts.weights[name].rms for name in constant}
    zero = all(v == 0 for v in values.values())
    title = (f"{'Zero' if zero else 'Constant'} initialisation: every weight of {span(constant)} is the same "
             f"{'(zero)' if zero else 'value'}, so the units of each layer compute the same thing and stay alike")
    evidence = {"constant_layers": constant, "weight_value_by_layer": values,
                "zero_gradient_layers": [s.name for s in ctx.weights if s.grad_norm == 0]}
    return finding("poor_initialization", "critical", title, constant, evidence, 0.99)


def _explains_trend(ratios, by_code: dict, ctx: Context) -> dict | None:
    trend = by_code.get("vanishing_gradient") or by_code.get("exploding_gradient")
    if trend is None or not ratios or ctx.facts.structure is None or ctx.facts.structure.skips:
        return None
    observed = _observed_change(trend)
    predicted = sum(math.log10(r) for _, r, _ in ratios[1:])  # layer l's weights scale the gradient below l
    if predicted * observed <= 0 or abs(predicted) < EXPLAINED * abs(observed):
        return None
    if not _forward_follows(predicted, ctx):
        return None
    names = [name for name, r, _ in ratios if abs(math.log10(r)) >= math.log10(1.25)] or [ratios[0][0]]
    direction = "small" if predicted < 0 else "large"
    title = (f"Weights of {span(names)} are too {direction} for their fan-in and activation: that alone predicts "
             f"{abs(predicted):.1f} of the {abs(observed):.1f} decades the gradient changes over depth")
    return finding("poor_initialization", "warning", title, names, _evidence(ratios, predicted, observed),
                   0.4 + 0.5 * min(1.0, abs(observed / predicted)))


def _forward_follows(predicted: float, ctx: Context) -> bool:
    """Whether the weight layers' forward output RMS moves FORWARD_MOVED decades the way the weights predict."""
    activations = activation_trend(ctx.weights)
    if activations is None:
        return True  # no forward statistics: the weights alone decide, as before
    # Folded normalisation rescales the weights so that the forward stays in scale; such weights are off the
    # He/Xavier expectation without being what drives the gradient.
    first, sign = activations.layer_means[0], math.copysign(1.0, predicted)
    return max(sign * (y - first) for y in activations.layer_means) >= FORWARD_MOVED


def _observed_change(trend_finding: dict) -> float:
    """Fitted output-side minus input-side change of the signal the trend finding saw (negative: shrinks)."""
    evidence = trend_finding["evidence"]
    if trend_finding["code"] == "vanishing_gradient":
        return evidence["fitted_change_decades"]
    return max(evidence["gradient"]["fitted_change_decades"] if evidence.get("gradient") else 0.0,
               evidence.get("activation_growth_decades", 0.0))


def _saturating(ratios, by_code: dict) -> dict | None:
    saturated = by_code.get("saturated_activation")
    large = [(name, r) for name, r, activation in ratios if r >= LARGE and activation in ("tanh", "sigmoid")]
    if saturated is None or not large:
        return None
    names = [name for name, _ in large]
    title = (f"Weights of {span(names)} are {max(r for _, r in large):.1f}x the Xavier scale for their fan-in, "
             "which drives the following sigmoid/tanh into saturation")
    return finding("poor_initialization", "warning", title, names, _evidence(ratios, None, None), 0.8)


def _evidence(ratios, predicted: float | None, observed: float | None) -> dict:
    return {"weight_rms_over_expected_by_layer": {name: round(r, 3) for name, r, _ in ratios},
            "expected_rms": "gain / sqrt(fan_in), gain sqrt(2) before ReLU-like activations, else 1",
            "predicted_change_decades": None if predicted is None else round(predicted, 3),
            "observed_change_decades": None if observed is None else round(observed, 3)}
