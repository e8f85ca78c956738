"""Findings and a verdict from the measured numbers; each finding says what it saw and what to change."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from gradaudit.schema import FINDING_CODES, LayerRecord
from worker.diagnosis import architecture, flow, initialization, nonfinite, recurrent, units
from worker.diagnosis.common import SEVERITY_RANK, Context
from worker.diagnosis.facts import RECURRENT, LayerRole, NetworkFacts

_OTHER = LayerRole()
from worker.diagnosis.recommendations import RECOMMENDATION_CODES, recommend

__all__ = ["FINDING_CODES", "RECOMMENDATION_CODES", "context_of", "diagnose", "verdict", "weight_layers"]

# Symptoms a critical cause already accounts for: zero or identical weights, a layer that is dead throughout.
_EXPLAINED_BY = {
    "poor_initialization": ("dead_relu", "saturated_activation", "vanishing_gradient", "exploding_gradient",
                            "missing_normalization", "deep_plain_stack"),
    "dead_relu": ("vanishing_gradient", "missing_normalization", "deep_plain_stack"),
    "deep_plain_stack": ("vanishing_gradient", "exploding_gradient"),
}


def context_of(facts: NetworkFacts) -> Context:
    """What every detector reads: the layers input side first, the weight layers among them, the facts."""
    return Context(sorted(facts.layers, key=lambda s: s.depth), weight_layers(facts.layers, facts.roles), facts)


def diagnose(facts: NetworkFacts) -> list[dict[str, Any]]:
    """All findings for one probe, root causes first, each with its recommendations."""
    ctx = context_of(facts)
    found = nonfinite.detect(ctx)
    if facts.loss_finite:
        found += _detect(ctx)
    found = sorted(_merge(_unexplained(found)), key=lambda f: FINDING_CODES.index(f["code"]))
    for f in found:
        f["recommendations"] = recommend(f, ctx, found)
    return found


def _detect(ctx: Context) -> list[dict]:
    found = flow.detect(ctx) + recurrent.detect(ctx) + units.detect_dead(ctx) + units.detect_saturated(ctx)
    found += initialization.detect(ctx, found)
    found += architecture.detect_missing_normalization(ctx, found)
    return found + architecture.detect_deep_plain_stack(ctx, found)


def weight_layers(layers: list[LayerRecord], roles: dict[str, LayerRole] | None = None) -> list[LayerRecord]:
    """The layers with parameters, depth renumbered 0, 1, ... so a trend's slope is per weight layer. A
    recurrence's own layers are left out: its time steps are not depth (recurrent.py reads them)."""
    roles = roles or {}
    owning = sorted((s for s in layers if s.parameters > 0 and roles.get(s.name, _OTHER).role != RECURRENT),
                    key=lambda s: s.depth)
    return [replace(s, depth=depth) for depth, s in enumerate(owning)]


def verdict(findings: list[dict[str, Any]]) -> str:
    """The worst severity among findings; 'healthy' when none is a warning or critical."""
    worst = max((SEVERITY_RANK[f["severity"]] for f in findings), default=0)
    return {0: "healthy", 1: "warning", 2: "critical"}[worst]


def _unexplained(found: list[dict]) -> list[dict]:
    """Drop symptoms a root cause already explains: symmetric weights or a fully dead layer (critical ones),
    and the vanishing/exploding gradient a deep plain stack is reported for."""
    causes = {f["code"] for f in found if f["code"] in _EXPLAINED_BY
              and (f["severity"] == "critical" or f["code"] == "deep_plain_stack")}
    explained = {code for cause in causes for code in _EXPLAINED_BY[cause]} - causes
    return [f for f in found if f["code"] not in explained]


def _merge(found: list[dict]) -> list[dict]:
    """One finding per code: the more severe one, the other's evidence kept under 'also'."""
    by_code: dict[str, dict] = {}
    for f in found:
        kept = by_code.get(f["code"])
        if kept is None:
            by_code[f["code"]] = f
            continue
        first, second = sorted((kept, f), key=lambda x: -SEVERITY_RANK[x["severity"]])
        first["evidence"] = {**first["evidence"], "also": second["evidence"]}
        first["layers"] = first["layers"] + [n for n in second["layers"] if n not in first["layers"]]
        by_code[f["code"]] = first
    return list(by_code.values())
