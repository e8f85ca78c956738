"""dead_relu and saturated_activation: what the units of each activation layer did on the probe batches."""

from __future__ import annotations

from gradaudit.schema import SATURATION_RULE, BatchRow, weighted_mean
from worker.diagnosis.common import Context, batch_values, finding, span
from worker.diagnosis.facts import ACTIVATION, NORMALIZATION, LayerRole

SATURATING = ("sigmoid", "tanh")
DEAD_WARNING, DEAD_CRITICAL = 0.5, 0.99  # share of a layer's units dead on every probe sample
SATURATED_WARNING, SATURATED_CRITICAL = 0.2, 0.6  # share of a layer's outputs in the saturated region
# A unit active on a share p of inputs outputs zero on all of n samples with probability (1 - p)^n, so n samples
# tell a dead unit from one active on 5% of inputs, at 95% confidence, from n = 59 (0.95^59 < 0.05). Below that,
# a share just past DEAD_WARNING is a coin flip (AlexNet's classifier: 0.50 on 12 samples, 0.35-0.45 on 32-256).
SAMPLES_TO_RESOLVE = 59


def dead_shares(ctx: Context) -> dict[str, float]:
    """Per ReLU layer, the share of its units that output zero on every probe sample.

    A dead unit zeroes its row of the feeding weight layer's gradient; a dead input zeroes a column. So the
    feeding layer's zero-gradient share g is 1 - (1 - dead out)(1 - dead in), which gives the dead share of this
    layer from that of the ReLU before it. Sparse but live units raise the layer's zero share, not g: the
    estimate is the smaller of the two.
    """
    shares, upstream, feeding = {}, 0.0, None
    for s in ctx.layers:
        role = ctx.facts.role(s.name)
        if s.parameters and role.role != NORMALIZATION:
            feeding = (s, upstream)
        elif s.parameters:
            feeding = (s, 0.0)  # per-channel scale and shift: a gradient entry per unit, no input columns
        if _is(role, "relu") and s.batch_rows:
            zeros = min(batch_values(s, "activation_zero_fraction") or [0.0])
            rows = zeros if feeding is None else 1 - (1 - feeding[0].grad_zero_fraction) / max(1e-9, 1 - feeding[1])
            shares[s.name] = upstream = max(0.0, min(zeros, rows))
    return shares


def detect_dead(ctx: Context) -> list[dict]:
    """dead_relu where some ReLU layer has at least half its units dead over every probe batch."""
    dead = list(dead_shares(ctx).items())
    flagged = [(name, share) for name, share in dead if share >= DEAD_WARNING]
    if not flagged:
        return []
    worst = max(share for _, share in flagged)
    samples = _samples(ctx, [name for name, _ in flagged])
    resolved = samples >= SAMPLES_TO_RESOLVE
    severity = "critical" if worst >= DEAD_CRITICAL else "warning" if resolved else "info"
    names = [name for name, _ in flagged]
    title = (f"Dead ReLUs: up to {worst:.0%} of the units of {span(names)} output zero for every one of "
             f"{samples} probe samples" + ("; no gradient passes them" if severity == "critical" else "") +
             ("" if severity != "info" else f"; {SAMPLES_TO_RESOLVE} samples are needed to tell a dead unit from "
                                            "one active on 5% of inputs: probe with batch_size x batches "
                                            f">= {SAMPLES_TO_RESOLVE} to decide"))
    evidence = {"dead_unit_share_by_layer": {name: round(share, 3) for name, share in dead},
                "samples": samples, "samples_to_resolve": SAMPLES_TO_RESOLVE,
                "rule": "dead share = min(share of outputs exactly zero in every batch, share of the feeding "
                        "weight layer's gradient rows that are exactly zero); flagged from 0.5, a warning from "
                        f"{SAMPLES_TO_RESOLVE} samples on (below, only a share of {DEAD_CRITICAL} or more)"}
    confidence = 0.5 + worst / 2 if resolved or severity == "critical" else 1 - (1 - 0.05) ** samples
    return [finding("dead_relu", severity, title, names, evidence, confidence)]


def _samples(ctx: Context, names: list[str]) -> int:
    """Probe samples behind the named layers' shares: the batch size times the batches they were seen in."""
    batches = min(len(s.batch_rows) for s in ctx.layers if s.name in names)
    return ctx.facts.batch_size * batches


def detect_saturated(ctx: Context) -> list[dict]:
    """saturated_activation where a sigmoid/tanh layer has a fifth or more of its outputs saturated."""
    shares = [(s.name, s.kind, _saturated_share(s.batch_rows))
              for s in ctx.layers if _is(ctx.facts.role(s.name), *SATURATING) and s.batch_rows]
    flagged = [(name, kind, share) for name, kind, share in shares if share >= SATURATED_WARNING]
    if not flagged:
        return []
    worst = max(share for *_, share in flagged)
    names = [name for name, *_ in flagged]
    kinds = sorted({kind for _, kind, _ in flagged})
    title = f"Saturated {'/'.join(kinds)}: up to {worst:.0%} of the outputs of {span(names)} sit where the " \
            "derivative is below 1% of its peak"
    evidence = {"saturated_share_by_layer": {name: round(share, 3) for name, _, share in shares},
                "rule": SATURATION_RULE, "kinds": kinds}
    return [finding("saturated_activation", "critical" if worst >= SATURATED_CRITICAL else "warning", title,
                    names, evidence, 0.5 + worst / 2)]


def _is(role: LayerRole, *functions: str) -> bool:
    return role.role == ACTIVATION and role.function in functions


def _saturated_share(rows: list[BatchRow]) -> float:
    """The element-weighted saturated share over the batches where it was measured (as the report's)."""
    measured = [row for row in rows if row.get("activation_saturated_fraction") is not None]
    return weighted_mean(measured, "activation_saturated_fraction") if measured else 0.0
