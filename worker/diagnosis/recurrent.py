"""recurrent_long_range (and exploding_gradient through time) for plain tanh recurrences.

The engine runs each plain recurrence on its own matrices over the probe's sequence length (standard normal
inputs, the probe's convention) and backpropagates step by step, so the decay or growth per time step is
observed, not assumed; this module fits a line through what it measured.
"""

from __future__ import annotations

from worker.diagnosis.common import Context, finding
from worker.diagnosis.facts import RecurrenceFacts
from worker.diagnosis.trend import least_squares

WARNING_DECADES, CRITICAL_DECADES = 2.0, 4.0  # change of |dh_T/dh_t| from the last step to the first
MIN_STEPS = 4


def detect(ctx: Context) -> list[dict]:
    """One finding per direction over all plain recurrent layers: decay (long range) or growth (exploding)."""
    measured = [(name, *_fit(facts)) for name, facts in ctx.facts.recurrences.items()]
    measured = [m for m in measured if m[1] is not None]
    findings = []
    decaying = [m for m in measured if m[1] <= -WARNING_DECADES]
    growing = [m for m in measured if m[1] >= WARNING_DECADES]
    if decaying:
        findings.append(_finding("recurrent_long_range", decaying, "decays"))
    if growing:
        findings.append(_finding("exploding_gradient", growing, "grows"))
    return findings


def _fit(facts: RecurrenceFacts) -> tuple[float | None, float | None, int]:
    """(change in decades of |dh_T/dh_t| from t=T to t=1, per-step slope, length); None for short sequences."""
    length = facts.sequence_length
    if length < MIN_STEPS:
        return None, None, length
    slope, _, _ = least_squares([float(-t) for t in range(length)], facts.log_gradient_norms)
    return -slope * (length - 1), -slope, length  # slope is per step forward in time


def _finding(code: str, measured: list, verb: str) -> dict:
    worst = max(measured, key=lambda m: abs(m[1]))
    decades = abs(worst[1])
    names = [m[0] for m in measured]
    title = (f"Plain recurrence: the gradient from the last time step to the first {verb} {decades:.1f} decades "
             f"over {worst[3]} steps ({abs(worst[2]):.2f} per step) in '{worst[0]}'")
    evidence = {"change_decades_by_layer": {m[0]: round(m[1], 3) for m in measured},
                "per_step_decades_by_layer": {m[0]: round(m[2], 4) for m in measured},
                "sequence_length": worst[3],
                "method": "|dh_T/dh_t| measured on the layer's own matrices over the probe's sequence length, "
                          "standard normal inputs"}
    severity = "critical" if decades >= CRITICAL_DECADES else "warning"
    return finding(code, severity, title, names, evidence, 0.6 + min(0.35, (decades - WARNING_DECADES) / 10))
