"""Least-squares trends of log10 magnitudes over depth, fitted across weight layers and probe batches.

The gradient trend uses the norm of the loss gradient with respect to each weight layer's output (one point
per layer and batch); where no output was observed it falls back to the RMS of the layer's parameter
gradients. A change of loss scale or batch size multiplies every point by the same factor, which shifts all
points alike and leaves the slope unchanged: thresholds on the fitted change are not absolute magnitudes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from gradaudit.schema import LayerRecord

MIN_LAYERS = 3


@dataclass(frozen=True)
class Trend:
    """A fit of y = log10(magnitude) over x = weight-layer index (0 at the input side)."""

    metric: str
    slope: float  # decades per weight layer; positive: larger toward the output
    change_decades: float  # fitted input-side value minus fitted output-side value
    r2: float
    names: list[str]  # the fitted layers, input side first
    layer_means: list[float]  # mean y of each fitted layer over its batches
    points: int
    excluded: int  # weight layers left out: magnitude zero, non-finite or not observed

    def evidence(self) -> dict[str, Any]:
        """The numbers behind a finding, JSON-safe."""
        return {
            "metric": self.metric,
            "slope_decades_per_layer": round(self.slope, 4),
            "fitted_change_decades": round(self.change_decades, 3),
            "fit_r2": round(self.r2, 3),
            "input_side_value": _power_of_ten(self.layer_means[0]),
            "output_side_value": _power_of_ten(self.layer_means[-1]),
            "layers_fitted": len(self.names),
            "points_fitted": self.points,
            "layers_excluded": self.excluded,
        }

    def beyond(self, margin: float, sign: float) -> list[str]:
        """Layers whose own mean is `margin` decades past the output end, in the direction `sign` (+1 larger)."""
        end = self.layer_means[-1]
        names = [n for n, y in zip(self.names, self.layer_means) if sign * (y - end) >= margin]
        return names or [self.names[0]]


def gradient_trend(weights: list[LayerRecord]) -> Trend | None:
    """The output-gradient trend, or the parameter-gradient RMS trend where outputs were not observed."""
    series = [[row["output_grad_norm"] for row in s.batch_rows] for s in weights]
    if sum(any(_usable(v) for v in values) for values in series) >= MIN_LAYERS:
        return fit("log10 |dL/d output| per weight layer and batch", weights, series)
    rms = [[s.grad_norm / math.sqrt(s.parameters)] if s.parameters else [] for s in weights]
    return fit("log10 RMS parameter gradient per weight layer", weights, rms)


def activation_trend(weights: list[LayerRecord]) -> Trend | None:
    """The trend of each weight layer's output RMS (sqrt(mean^2 + std^2)) over depth."""
    series = [[_rms(row) for row in s.batch_rows] for s in weights]
    return fit("log10 RMS of each weight layer's output per batch", weights, series)


def fit(metric: str, layers: list[LayerRecord], series: list[list]) -> Trend | None:
    """Least squares over every usable (layer index, log10 value) point; None with fewer than MIN_LAYERS layers."""
    kept = [(i, s.name, [math.log10(v) for v in values if _usable(v)]) for i, (s, values)
            in enumerate(zip(layers, series))]
    kept = [(i, name, ys) for i, name, ys in kept if ys]
    if len(kept) < MIN_LAYERS:
        return None
    xs = [float(i) for i, _, ys in kept for _ in ys]
    ys = [y for _, _, values in kept for y in values]
    slope, intercept, r2 = least_squares(xs, ys)
    change = slope * (kept[0][0] - kept[-1][0])
    return Trend(metric, slope, change, r2, [name for _, name, _ in kept],
                 [sum(v) / len(v) for _, _, v in kept], len(xs), len(layers) - len(kept))


def _usable(value) -> bool:
    return value is not None and math.isfinite(value) and value > 0


def _rms(row: dict) -> float | None:
    mean, std = row.get("activation_mean"), row.get("activation_std")
    return None if mean is None or std is None else math.hypot(mean, std)


def least_squares(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / spread if spread else 0.0
    intercept = mean_y - slope * mean_x
    total = sum((y - mean_y) ** 2 for y in ys)
    residual = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys))
    return slope, intercept, 1.0 - residual / total if total > 0 else 1.0


def _power_of_ten(exponent: float) -> float:
    # A value extrapolated past the float range must still give a JSON-safe number.
    return 10 ** max(-300.0, min(300.0, exponent))
