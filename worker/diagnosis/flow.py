"""vanishing_gradient and exploding_gradient from depth trends of output gradients and activations."""

from __future__ import annotations

from gradaudit.thresholds import CRITICAL_DECADES, WARNING_DECADES
from worker.diagnosis.common import Context, finding
from worker.diagnosis.trend import Trend, activation_trend, gradient_trend

# Activations growing with depth: the forward half of an explosion (Zhang et al. 2019).
ACTIVATION_WARNING_DECADES = 1.5
# Growth counts as BatchNorm's when the normalised layers' own trend carries at least this share of it.
EXPLAINED = 0.5


def detect(ctx: Context) -> list[dict]:
    """At most one of vanishing/exploding gradient: the direction with the larger fitted change."""
    gradients, activations = gradient_trend(ctx.weights), activation_trend(ctx.weights)
    change = gradients.change_decades if gradients else 0.0
    growth = -activations.change_decades if activations else 0.0
    if change <= -WARNING_DECADES:
        return [_vanishing(gradients)]
    if change >= WARNING_DECADES and growth < ACTIVATION_WARNING_DECADES and (
            normalised := _normalised_trend(ctx, change)):
        return [_normalised_growth(gradients, normalised)]
    if change >= WARNING_DECADES or growth >= ACTIVATION_WARNING_DECADES:
        return [_exploding(gradients, activations, change, growth)]
    return []


def _normalised_trend(ctx: Context, change: float) -> Trend | None:
    """The trend over the weight layers normalised next, where it carries at least EXPLAINED of the growth."""
    normalised = ctx.normalised()
    trend = gradient_trend([s for s in ctx.weights[:-1] if s.name in normalised] + ctx.weights[-1:])
    return trend if trend and trend.change_decades >= EXPLAINED * change else None


def _normalised_growth(gradients: Trend, normalised: Trend) -> dict:
    """Gradient growth toward the input carried by the weight layers a normalization follows: what BatchNorm
    does at initialisation (Yang et al. 2019: the gradient grows by sqrt(pi / (pi - 1)) per BatchNorm-ReLU
    layer), in weights whose scale no longer matters, so that their effective step tunes itself (Arora, Li and
    Lyu 2019); the layers beside them (a squeeze-excitation gate, the classifier) inherit it. Such networks
    train without clipping: reported, not a warning."""
    title = (f"The gradient grows {gradients.change_decades:.1f} decades toward the input, "
             f"{normalised.change_decades:.1f} of them over the {len(normalised.names)} normalised weight "
             "layers: BatchNorm's growth at initialisation, which sets no normalised layer's effective step")
    return finding("exploding_gradient", "info", title, gradients.beyond(WARNING_DECADES, 1.0),
                   {"gradient": gradients.evidence(), "normalised_layers": normalised.evidence()}, 0.5)


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
