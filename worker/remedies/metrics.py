"""Each finding's own evidence metric, measured on any probe whether or not the finding fires there, with the
threshold at which the detector flags it: what a verification compares before and after an edit."""

from __future__ import annotations

import math
from dataclasses import dataclass

from worker.diagnosis import architecture, flow, recurrent, units
from worker.diagnosis.common import Context
from worker.diagnosis.initialization import scale_ratios
from worker.diagnosis.trend import activation_trend, gradient_trend


@dataclass(frozen=True)
class Metric:
    """How a finding is measured: its name, the threshold it is flagged at, and whether lower is healthier."""

    name: str
    threshold: float
    lower_is_better: bool

    def moved_halfway(self, before: float, after: float) -> bool:
        """Whether after is at least halfway from before to the threshold (or past it)."""
        return self._gain(before, after) >= 0.5 * abs(before - self.threshold) and self._gain(before, after) > 0

    def worse(self, before: float, after: float) -> bool:
        """Whether after is further from healthy than before by more than a tenth of before's distance to the
        threshold (and at least a hundredth of the threshold's scale: probe noise is not a change)."""
        margin = max(0.1 * abs(before - self.threshold), 0.01 * max(1.0, abs(self.threshold)))
        return -self._gain(before, after) > margin

    def _gain(self, before: float, after: float) -> float:
        return before - after if self.lower_is_better else after - before


METRICS = {
    "vanishing_gradient": Metric("fitted_change_decades", -flow.WARNING_DECADES, lower_is_better=False),
    "exploding_gradient": Metric("growth_decades", flow.WARNING_DECADES, lower_is_better=True),
    "recurrent_long_range": Metric("recurrent_change_decades", -recurrent.WARNING_DECADES, lower_is_better=False),
    "saturated_activation": Metric("saturated_share", units.SATURATED_WARNING, lower_is_better=True),
    "dead_relu": Metric("dead_unit_share", units.DEAD_WARNING, lower_is_better=True),
    "poor_initialization": Metric("worst_weight_scale_decades", math.log10(2.0), lower_is_better=True),
    "missing_normalization": Metric("activation_drift_decades", architecture.DRIFT_DECADES, lower_is_better=True),
    "deep_plain_stack": Metric("shortest_gradient_path_weight_layers", architecture.DEEP_PLAIN - 1,
                               lower_is_better=True),
    "nonfinite_values": Metric("nonfinite_entries", 0.0, lower_is_better=True),
}


CONSTANT_WEIGHTS = Metric("constant_weight_layers", 0.0, lower_is_better=True)


def metric_for(finding: dict) -> Metric:
    """The metric a finding is judged by: its code's, or for symmetric weights the count of constant layers."""
    if finding["code"] == "poor_initialization" and "constant_layers" in finding["evidence"]:
        return CONSTANT_WEIGHTS
    return METRICS[finding["code"]]


def measure(metric: Metric, code: str, ctx: Context) -> float | None:
    """The metric on this probe; None where it cannot be measured (no weight layers, no recurrence)."""
    if metric is CONSTANT_WEIGHTS:
        return float(sum(1 for s in ctx.weights if (f := ctx.facts.weights.get(s.name)) and f.constant))
    return _MEASURES[code](ctx)


def _gradient_change(ctx: Context) -> float | None:
    trend = gradient_trend(ctx.weights)
    return round(trend.change_decades, 3) if trend else None


def _growth(ctx: Context) -> float | None:
    recurrences = _recurrence_changes(ctx)
    if recurrences:
        return round(max(recurrences), 3)
    gradients, activations = gradient_trend(ctx.weights), activation_trend(ctx.weights)
    if gradients is None and activations is None:
        return None
    change = gradients.change_decades if gradients else 0.0
    growth = -activations.change_decades if activations else 0.0
    return round(max(change, growth), 3)


def _recurrence_changes(ctx: Context) -> list[float]:
    changes = []
    for facts in ctx.facts.recurrences.values():
        change, _, _ = recurrent._fit(facts)
        if change is not None:
            changes.append(change)
    return changes


def _recurrent(ctx: Context) -> float | None:
    changes = _recurrence_changes(ctx)
    return round(min(changes), 3) if changes else None


def _saturated(ctx: Context) -> float | None:
    shares = [units._saturated_share(s.batch_rows) for s in ctx.layers
              if units._is(ctx.facts.role(s.name), *units.SATURATING) and s.batch_rows]
    return round(max(shares), 3) if shares else 0.0


def _dead(ctx: Context) -> float | None:
    shares = units.dead_shares(ctx)
    return round(max(shares.values()), 3) if shares else 0.0


def _init_scale(ctx: Context) -> float | None:
    ratios = [r for _, r, _ in scale_ratios(ctx) if r > 0]
    return round(max(abs(math.log10(r)) for r in ratios), 3) if ratios else None


def _drift(ctx: Context) -> float | None:
    activations = activation_trend(ctx.weights)
    return round(abs(activations.change_decades), 3) if activations else None


def _path(ctx: Context) -> float | None:
    structure = ctx.facts.structure
    if structure is None or structure.shortest_path is None:
        return None
    return float(structure.shortest_path)


def _nonfinite(ctx: Context) -> float | None:
    entries = sum(s.grad_nonfinite for s in ctx.layers) + sum(ctx.weight_nonfinite.values())
    return float(entries + (0 if ctx.loss_finite else 1))


_MEASURES = {
    "vanishing_gradient": _gradient_change, "exploding_gradient": _growth, "recurrent_long_range": _recurrent,
    "saturated_activation": _saturated, "dead_relu": _dead, "poor_initialization": _init_scale,
    "missing_normalization": _drift, "deep_plain_stack": _path, "nonfinite_values": _nonfinite,
}
