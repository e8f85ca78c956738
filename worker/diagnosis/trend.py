"""Least-squares trends of log10 magnitudes over depth, fitted across weight layers and probe batches.

The gradient trend follows the loss gradient with respect to each weight layer's output (one point per layer
and batch), from the layer below the output layer back to the input. The output layer's own point is left out:
its gradient is the loss's (softmax minus target), set by the class count and the loss, not by how the network
carries gradients.

Tensor size is not gradient health. Where a layer's output has k times the entries of another's (a higher
resolution, a wider layer), the standard initialisations keep one of two measures level: He/Xavier in fan-in
mode and max pooling keep the gradient's norm, fan-out mode (torchvision's convolutions) keeps its RMS per
entry. The two measures differ by exactly the size ratio, sqrt(k), so a change that is size alone shows in one
of them and not the other, while a change of gain per layer (weights off scale, saturating or dead units)
shows in both. The trend is the measure that changes less: the part of the change that size cannot explain.
A change of loss scale or batch size multiplies every point by the same factor, which shifts all points alike
and leaves the slope unchanged: thresholds on the fitted change are not absolute magnitudes.
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
    """The output-gradient trend of the layers below the output layer, by whichever of norm and per-entry RMS
    changes less; the parameter-gradient RMS trend where outputs were not observed."""
    below = weights[:-1]
    norms = [[row["output_grad_norm"] for row in s.batch_rows] for s in below]
    if sum(any(_usable(v) for v in values) for values in norms) >= MIN_LAYERS:
        per_entry = [[_per_entry(row) for row in s.batch_rows] for s in below]
        trends = [fit("log10 |dL/d output| per weight layer and batch", below, norms),
                  fit("log10 RMS per entry of dL/d output per weight layer and batch", below, per_entry)]
        return min((t for t in trends if t), key=lambda t: abs(t.change_decades), default=None)
    rms = [[s.grad_norm / math.sqrt(s.parameters)] if s.parameters else [] for s in weights]
    return fit("log10 RMS parameter gradient per weight layer", weights, rms)


def _per_entry(row: dict) -> float | None:
    norm, entries = row.get("output_grad_norm"), row.get("numel")
    return norm / math.sqrt(entries) if _usable(norm) and entries else None


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
