"""Two reports of succeeded audits in, what changed out: the audit against its baseline (an earlier version of the
network, or the same network audited before).

- Findings are matched by code (the diagnosis gives one finding per code): `added` (in the audit only), `removed`
  (in the baseline only), `severity_changed`, and the codes `unchanged`.
- Layers are matched by name, in the audit's depth order; a name found on one side only is listed in
  `only_in_audit` or `only_in_baseline`. Per matched layer, five metrics: the gradient scales `grad_norm`,
  `grad_to_weight` (null for a layer without parameters) and `output_grad_norm` (‖dL/d output‖, the norm the
  flow findings read), each with its change in decades (log10 after/before; null where either side is null or
  zero), and the shares `activation_zero_fraction` (outputs exactly zero: dead ReLU units) and
  `activation_saturated_fraction` (Sigmoid/Tanh outputs past saturation), each with its difference.
- `regression` is true when, and only when, at least one of these holds (each is named in `reasons`):
  the verdict got worse (healthy < warning < critical); a finding at warning or critical is in the audit and not
  in the baseline; a finding in both has a higher severity (info < warning < critical). Removed findings, lower
  severities, added info findings and layer metrics never make a regression: the diagnosis already judged which
  changes of the numbers matter.

Plain Python: the API view and the CLI both call it.
"""

from __future__ import annotations

import math
from typing import Any

from typing_extensions import TypedDict

from gradaudit.schema import Severity, Verdict

# Verdicts and finding severities on one scale: a healthy verdict and an info finding gate nothing.
RANK = {"healthy": 0, "info": 0, "warning": 1, "critical": 2}
SERIOUS = RANK["warning"]
SCALE_METRICS = ("grad_norm", "grad_to_weight", "output_grad_norm")
FRACTION_METRICS = ("activation_zero_fraction", "activation_saturated_fraction")


class FindingSummary(TypedDict):
    """A finding on one side only: what the report says of it, recommendations left out."""

    code: str
    severity: Severity
    title: str
    layers: list[str]


class SeverityChange(TypedDict):
    """A finding on both sides whose severity differs."""

    code: str
    title: str  # the audit's
    before: Severity
    after: Severity


class FindingChanges(TypedDict):
    """Findings matched by code."""

    added: list[FindingSummary]
    removed: list[FindingSummary]
    severity_changed: list[SeverityChange]
    unchanged: list[str]


class ScaleChange(TypedDict):
    """A gradient scale on both sides; decades = log10(after / before), null where either is null or zero."""

    before: float | None
    after: float | None
    decades: float | None


class FractionChange(TypedDict):
    """A share on both sides; change = after - before, null where either is null."""

    before: float | None
    after: float | None
    change: float | None


class LayerComparison(TypedDict):
    """One layer found by name in both reports, with its metrics before (baseline) and after (audit)."""

    name: str
    kind: str
    depth: int  # in the audit
    baseline_depth: int
    grad_norm: ScaleChange
    grad_to_weight: ScaleChange
    output_grad_norm: ScaleChange
    activation_zero_fraction: FractionChange
    activation_saturated_fraction: FractionChange


class LayerChanges(TypedDict):
    """Layers matched by name."""

    matched: list[LayerComparison]
    only_in_audit: list[str]
    only_in_baseline: list[str]


class VerdictChange(TypedDict):
    """The baseline's verdict and the audit's."""

    before: Verdict
    after: Verdict


class Comparison(TypedDict):
    """An audit against its baseline: GET /v1/audits/{id}/compare/{base_id}, `gradaudit compare`."""

    audit_id: str | None
    baseline_id: str | None
    verdict: VerdictChange
    regression: bool
    reasons: list[str]  # why it is a regression, one line each; empty when it is not
    findings: FindingChanges
    layers: LayerChanges


def compare_reports(report: dict[str, Any], baseline: dict[str, Any]) -> Comparison:
    """What changed from the baseline's report to the audit's (module docstring: the rules)."""
    findings = compare_findings(report["findings"], baseline["findings"])
    verdict: VerdictChange = {"before": baseline["verdict"], "after": report["verdict"]}
    reasons = regression_reasons(verdict, findings)
    return {"audit_id": report.get("id"), "baseline_id": baseline.get("id"), "verdict": verdict,
            "regression": bool(reasons), "reasons": reasons, "findings": findings,
            "layers": compare_layers(report["layers"], baseline["layers"])}


def compare_findings(after: list[dict[str, Any]], before: list[dict[str, Any]]) -> FindingChanges:
    """Findings matched by code, in the audit's order (the baseline's for removed ones)."""
    old = {finding["code"]: finding for finding in before}
    new = {finding["code"]: finding for finding in after}
    both = [finding for finding in after if finding["code"] in old]
    return {
        "added": [_summary(finding) for finding in after if finding["code"] not in old],
        "removed": [_summary(finding) for finding in before if finding["code"] not in new],
        "severity_changed": [{"code": finding["code"], "title": finding["title"],
                              "before": old[finding["code"]]["severity"], "after": finding["severity"]}
                             for finding in both if finding["severity"] != old[finding["code"]]["severity"]],
        "unchanged": [finding["code"] for finding in both if finding["severity"] == old[finding["code"]]["severity"]],
    }


def regression_reasons(verdict: VerdictChange, findings: FindingChanges) -> list[str]:
    """Each way the audit is worse than its baseline, in words; none: no regression."""
    reasons = []
    if RANK[verdict["after"]] > RANK[verdict["before"]]:
        reasons.append(f"the verdict got worse: {verdict['before']} -> {verdict['after']}")
    reasons += [f"new finding {finding['code']} ({finding['severity']})"
                for finding in findings["added"] if RANK[finding["severity"]] >= SERIOUS]
    reasons += [f"{change['code']} got more severe: {change['before']} -> {change['after']}"
                for change in findings["severity_changed"] if RANK[change["after"]] > RANK[change["before"]]]
    return reasons


def compare_layers(after: list[dict[str, Any]], before: list[dict[str, Any]]) -> LayerChanges:
    """Layers matched by name; per matched layer the five metrics before and after."""
    old = {layer["name"]: layer for layer in before}
    new = {layer["name"] for layer in after}
    return {
        "matched": [compare_layer(layer, old[layer["name"]]) for layer in _by_depth(after) if layer["name"] in old],
        "only_in_audit": [layer["name"] for layer in _by_depth(after) if layer["name"] not in old],
        "only_in_baseline": [layer["name"] for layer in _by_depth(before) if layer["name"] not in new],
    }


def compare_layer(after: dict[str, Any], before: dict[str, Any]) -> LayerComparison:
    """One layer's metrics in the baseline and in the audit."""
    old, new = layer_metrics(before), layer_metrics(after)
    scales = {name: _scale_change(old[name], new[name]) for name in SCALE_METRICS}
    fractions = {name: _fraction_change(old[name], new[name]) for name in FRACTION_METRICS}
    return {"name": after["name"], "kind": after["kind"], "depth": after["depth"],
            "baseline_depth": before["depth"], **scales, **fractions}


def layer_metrics(layer: dict[str, Any]) -> dict[str, float | None]:
    """The compared metrics of a report layer; a layer without parameters has no weight gradient to compare."""
    weighted = layer["parameters"] > 0
    output_grad, activation = layer.get("output_grad") or {}, layer.get("activation") or {}
    return {
        "grad_norm": layer["grad_norm"] if weighted else None,
        "grad_to_weight": layer["grad_to_weight"] if weighted else None,
        "output_grad_norm": output_grad.get("norm"),
        "activation_zero_fraction": activation.get("zero_fraction"),
        "activation_saturated_fraction": activation.get("saturated_fraction"),
    }


def _summary(finding: dict[str, Any]) -> FindingSummary:
    return {"code": finding["code"], "severity": finding["severity"], "title": finding["title"],
            "layers": finding["layers"]}


def _by_depth(layers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(layers, key=lambda layer: layer["depth"])


def _scale_change(before: float | None, after: float | None) -> ScaleChange:
    comparable = _finite(before) and _finite(after) and before > 0 and after > 0
    return {"before": before, "after": after, "decades": math.log10(after / before) if comparable else None}


def _fraction_change(before: float | None, after: float | None) -> FractionChange:
    comparable = _finite(before) and _finite(after)
    return {"before": before, "after": after, "change": after - before if comparable else None}


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def render_comparison(comparison: Comparison, *, largest: int = 5) -> str:
    """A terminal-friendly rendering: the regression flag and why, the findings that changed, and the layers whose
    output gradient moved the most."""
    verdict, findings = comparison["verdict"], comparison["findings"]
    flag = "REGRESSION" if comparison["regression"] else "no regression"
    lines = [f"audit {comparison['audit_id']} against baseline {comparison['baseline_id']}: {flag}",
             f"verdict: {verdict['before']} -> {verdict['after']}"]
    lines += [f"  + [{f['severity']}] {f['code']}: {f['title']}" for f in findings["added"]]
    lines += [f"  - [{f['severity']}] {f['code']}: {f['title']}" for f in findings["removed"]]
    lines += [f"  ~ {c['code']}: {c['before']} -> {c['after']}" for c in findings["severity_changed"]]
    if findings["unchanged"]:
        lines.append(f"  = {', '.join(findings['unchanged'])}")
    lines += [f"regression: {reason}" for reason in comparison["reasons"]]
    return "\n".join(lines + _layer_summary(comparison["layers"], largest))


def _layer_summary(layers: LayerChanges, largest: int) -> list[str]:
    lines = [f"layers: {len(layers['matched'])} matched, {_names(layers['only_in_audit'])} only in the audit, "
             f"{_names(layers['only_in_baseline'])} only in the baseline"]
    moved = sorted((layer for layer in layers["matched"] if layer["output_grad_norm"]["decades"] is not None),
                   key=lambda layer: -abs(layer["output_grad_norm"]["decades"]))[:largest]
    if moved:
        lines.append("largest changes of |dL/d output| (decades, baseline -> audit):")
        lines += [f"  {layer['name'][:40]:<40} {layer['output_grad_norm']['decades']:+7.2f}  "
                  f"({layer['output_grad_norm']['before']:.2e} -> {layer['output_grad_norm']['after']:.2e})"
                  for layer in moved]
    return lines


def _names(names: list[str], shown: int = 3) -> str:
    if not names:
        return "0"
    more = f", +{len(names) - shown} more" if len(names) > shown else ""
    return f"{len(names)} ({', '.join(names[:shown])}{more})"
