"""A least-squares fit of how the per-parameter gradient RMS changes with depth.

The metric is log10(grad_norm / sqrt(parameters)), the RMS gradient of a layer's parameters. A change of
loss scale or batch size multiplies every layer's gradient by the same factor, which shifts all points by
the same amount and leaves the fitted slope unchanged, so thresholds on the slope are not absolute
magnitudes. RMS rather than grad_to_weight keeps badly scaled weights from looking like a flow problem.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from worker.engine.result import LayerStats

MIN_LAYERS = 3
_AFFECTED_DECADES = 3.0


@dataclass(frozen=True)
class GradientTrend:
    """The fit, in decades: slope per layer of depth, and fitted input-end minus output-end value."""

    slope: float  # d log10(rms) / d depth; positive means gradients shrink toward the input
    change_decades: float
    input_fit: float
    output_fit: float
    points: list[tuple[LayerStats, float]]
    affected: list[str]
    excluded: int

    def evidence(self) -> dict[str, Any]:
        """The numbers behind a vanishing/exploding finding, JSON-safe."""
        first, last = self.points[0][0], self.points[-1][0]
        return {
            "metric": "log10(grad_norm / sqrt(parameters)) fitted by least squares over depth",
            "slope_decades_per_layer": self.slope,
            "fitted_change_decades": self.change_decades,
            "input_side_fitted_rms_grad": _power_of_ten(self.input_fit),
            "output_side_fitted_rms_grad": _power_of_ten(self.output_fit),
            "first_layer_grad_norm": first.grad_norm,
            "last_layer_grad_norm": last.grad_norm,
            "layers_fitted": len(self.points),
            "layers_excluded_zero_gradient": self.excluded,
        }


def fit_trend(layers: list[LayerStats]) -> GradientTrend | None:
    """The depth trend over layers with a non-zero gradient, or None with fewer than MIN_LAYERS of them."""
    usable = sorted((s for s in layers if s.grad_norm > 0 and s.parameters > 0), key=lambda s: s.depth)
    if len(usable) < MIN_LAYERS:
        return None
    points = [(s, math.log10(s.grad_norm / math.sqrt(s.parameters))) for s in usable]
    slope, intercept = _least_squares([float(s.depth) for s, _ in points], [y for _, y in points])
    input_fit = intercept + slope * usable[0].depth
    output_fit = intercept + slope * usable[-1].depth
    change = input_fit - output_fit
    return GradientTrend(slope, change, input_fit, output_fit, points,
                         _affected(points, output_fit, change), len(layers) - len(usable))


def _least_squares(xs: list[float], ys: list[float]) -> tuple[float, float]:
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / spread if spread else 0.0
    return slope, mean_y - slope * mean_x


def _affected(points: list[tuple[LayerStats, float]], output_fit: float, change: float) -> list[str]:
    """Layers whose own RMS is off the output-end fit by the warning margin, in the trend's direction."""
    sign = -1.0 if change < 0 else 1.0
    names = [s.name for s, y in points if sign * (y - output_fit) >= _AFFECTED_DECADES]
    return names or [points[0][0].name]


def _power_of_ten(exponent: float) -> float:
    # A fit extrapolated past the float range must still give a JSON-safe number.
    return 10 ** max(-300.0, min(300.0, exponent))
