"""recurrent_long_range (and exploding_gradient through time) for plain tanh recurrences.

The gradient of the last hidden state with respect to each earlier one is measured directly on the layer's own
matrices: the recurrence is run over the probe's sequence length on standard normal inputs (the probe's
convention) and backpropagated step by step, so the decay or growth per time step is observed, not assumed.
"""

from __future__ import annotations

import torch

from worker.engine.detectors.common import Context, finding
from worker.engine.detectors.weights import RecurrenceFacts
from worker.engine.trend import _least_squares

WARNING_DECADES, CRITICAL_DECADES = 2.0, 4.0  # change of |dh_T/dh_t| from the last step to the first
_SEQUENCES = 32


def detect(ctx: Context) -> list[dict]:
    """One finding per direction over all plain recurrent layers: decay (long range) or growth (exploding)."""
    measured = [(name, *_measure(facts, _length(ctx, name, facts))) for name, facts in ctx.facts.recurrences.items()]
    measured = [m for m in measured if m[1] is not None]
    findings = []
    decaying = [m for m in measured if m[1] <= -WARNING_DECADES]
    growing = [m for m in measured if m[1] >= WARNING_DECADES]
    if decaying:
        findings.append(_finding("recurrent_long_range", decaying, "decays"))
    if growing:
        findings.append(_finding("exploding_gradient", growing, "grows"))
    return findings


def _length(ctx: Context, name: str, facts: RecurrenceFacts) -> int:
    stats = next((s for s in ctx.layers if s.name == name), None)
    numel = stats.probes[0]["numel"] if stats and stats.probes else 0
    return numel // (ctx.facts.batch_size * facts.recurrent_matrix.shape[0])


def _measure(facts: RecurrenceFacts, length: int) -> tuple[float | None, float | None, int]:
    """(change in decades of |dh_T/dh_t| from t=T to t=1, per-step slope, length); None for short sequences."""
    if length < 4:
        return None, None, length
    generator = torch.Generator().manual_seed(0)
    w, r, b = facts.input_matrix, facts.recurrent_matrix, facts.bias
    x = torch.randn(length, _SEQUENCES, w.shape[1], generator=generator, dtype=torch.float64)
    h, derivatives = torch.zeros(_SEQUENCES, r.shape[0], dtype=torch.float64), []
    for t in range(length):
        h = torch.tanh(x[t] @ w.T + h @ r.T + b)
        derivatives.append(1 - h.square())
    g = torch.randn(_SEQUENCES, r.shape[0], generator=generator, dtype=torch.float64)
    logs = []
    for t in range(length - 1, -1, -1):
        logs.append(float(g.norm(dim=1).clamp_min(1e-300).log10().mean()))
        g = (g * derivatives[t]) @ r
    slope, _, _ = _least_squares([float(-t) for t in range(length)], logs)
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
