"""vanishing_gradient and exploding_gradient from depth trends of output gradients and activations."""

from __future__ import annotations

from worker.diagnosis.common import Context, finding
from worker.diagnosis.trend import Trend, activation_trend, gradient_trend

# Fitted change, in decades, between the input-side and output-side ends of the trend.
WARNING_DECADES, CRITICAL_DECADES = 1.5, 4.0
# Activations growing with depth: the forward half of an explosion (Zhang et al. 2019).
ACTIVATION_WARNING_DECADES = 1.5


def detect(ctx: Context) -> list[dict]:
    """At most one of vanishing/exploding gradient: the direction with the larger fitted change."""
    gradients, activations = gradient_trend(ctx.weights), activation_trend(ctx.weights)
    change = gradients.change_decades if gradients else 0.0
    growth = -activations.change_decades if activations else 0.0
    if change <= -WARNING_DECADES:
        return [_vanishing(gradients)]
    if growth >= ACTIVATION_WARNING_DECADES or (change >= WARNING_DECADES and not ctx.fully_normalised()):
        return [_exploding(gradients, activations, change, growth)]
    if change >= WARNING_DECADES:
        return [_normalised_growth(gradients, change)]
    return []


def trends(ctx: Context) -> tuple[Trend | None, Trend | None]:
    """The gradient and activation trends, for detectors that weigh causes against them."""
    return gradient_trend(ctx.weights), activation_trend(ctx.weights)


def _normalised_growth(gradients: Trend, change: float) -> dict:
    """Gradient growth toward the input in a network with a normalization after every hidden weight layer: what
    BatchNorm does at initialisation (Yang et al. 2019: the gradient grows by sqrt(pi / (pi - 1)) per BatchNorm-
    ReLU layer), in weights whose scale no longer matters, so that the effective step tunes itself (Arora, Li
    and Lyu 2019). Such networks train without clipping: reported, not a warning."""
    title = (f"The gradient grows {change:.1f} decades toward the input, as BatchNorm networks do at "
             "initialisation; every hidden weight layer is normalised, so this sets no layer's effective step")
    return finding("exploding_gradient", "info", title, gradients.beyond(WARNING_DECADES, 1.0),
                   {"gradient": gradients.evidence(), "normalised": "every hidden weight layer"}, 0.5)


def _severity(decades: float) -> str:
    return "critical" if decades >= CRITICAL_DECADES else "warning"


def _confidence(trend: Trend, decades: float) -> float:
    return trend.r2 * min(1.0, decades / (2 * WARNING_DECADES)) + 0.2


def _vanishing(trend: Trend) -> dict:
    decades = -trend.change_decades
    title = (f"Vanishing gradients: the gradient reaching the input-side layers is {decades:.1f} decades "
             f"smaller than at the output side ({abs(trend.slope):.2f} decades per weight layer)")
    return finding("vanishing_gradient", _severity(decades), title, trend.beyond(WARNING_DECADES, -1.0),
                   trend.evidence(), _confidence(trend, decades))


def _exploding(gradients: Trend | None, activations: Trend | None, change: float, growth: float) -> dict:
    decades = max(change, growth)
    evidence = {"gradient": gradients.evidence() if gradients else None,
                "activation": activations.evidence() if activations else None,
                "activation_growth_decades": round(growth, 3)}
    if change >= growth:
        title = (f"Exploding gradients: the gradient grows {change:.1f} decades from the output side to the "
                 f"input side ({abs(gradients.slope):.2f} decades per weight layer)")
        layers, trend = gradients.beyond(WARNING_DECADES, 1.0), gradients
    else:
        title = f"Exploding activations: layer outputs grow {growth:.1f} decades with depth"
        layers, trend = activations.names[len(activations.names) // 2:], activations
    return finding("exploding_gradient", _severity(decades), title, layers, evidence, _confidence(trend, decades))
