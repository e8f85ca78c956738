"""The report document (contract v1), built the same way from database rows and from the engine.

Each layer keeps its v1 fields and gains `output_grad` and `activation`: its output's statistics aggregated
over the probe batches, each with the per-batch values under `batches`; null where the output was not seen.
The shapes of all of it are gradaudit.schema's.
"""

from __future__ import annotations

from typing import Any

from gradaudit.schema import activation_summary, output_grad_summary

REPORT_VERSION = 1


def build_report(
    *,
    audit_id: str | None,
    network: dict[str, Any],
    setup: dict[str, Any],
    layers: list[dict[str, Any]],
    findings: list[dict[str, Any]],
    verdict: str,
    combined: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON report of a succeeded audit."""
    return {
        "id": audit_id,
        "status": "succeeded",
        "report_version": REPORT_VERSION,
        "network": network,
        "setup": setup,
        "layers": [layer_json(layer) for layer in layers],
        "findings": findings,
        "verdict": verdict,
        "combined": combined,
    }


def layer_json(layer: dict[str, Any]) -> dict[str, Any]:
    """A layer of the report: a LayerRecord's statistics, with its batch rows summarised as `output_grad` and
    `activation` (gradaudit.schema defines both summaries)."""
    fields = {key: value for key, value in layer.items() if key != "batch_rows"}
    rows = layer.get("batch_rows") or []
    return {**fields, "output_grad": output_grad_summary(rows), "activation": activation_summary(rows)}


def render_text(report: dict[str, Any]) -> str:
    """A terminal-friendly rendering: verdict, findings with their fixes, then the layer table."""
    network = report["network"]
    lines = [
        f"verdict: {report['verdict'].upper()}",
        f"network: {network['format']}, {network['parameters']:,} parameters in {network['layers']} layers",
        f"setup:   {_setup_line(report['setup'])}",
        "",
    ]
    lines += _findings_lines(report["findings"]) + _combined_lines(report.get("combined")) + [""]
    return "\n".join(lines + _layer_lines(report["layers"]))


def _setup_line(setup: dict[str, Any]) -> str:
    keys = ("device", "batch_size", "seed", "loss")
    return ", ".join(f"{key}={setup[key]}" for key in keys if key in setup)


def _findings_lines(findings: list[dict[str, Any]]) -> list[str]:
    if not findings:
        return ["no findings"]
    lines = []
    for finding in findings:
        lines.append(f"[{finding['severity']}] {finding['code']}: {finding['title']}")
        lines += [f"    fix ({rec['code']}{_status(rec)}): {rec['text']}" for rec in finding.get("recommendations", [])]
    return lines


def _status(recommendation: dict[str, Any]) -> str:
    verification = recommendation.get("verification")
    return f", {verification['status'].replace('_', ' ')}" if verification else ""


def _combined_lines(combined: dict[str, Any] | None) -> list[str]:
    """The combined patch: which fixes, and the verdict before and after."""
    if not combined:
        return []
    verification = combined.get("verification") or {}
    codes = ", ".join(f"{entry['code']}" for entry in combined.get("recommendations", []))
    after = (f"{verification.get('verdict_before')} -> {verification.get('verdict_after')}"
             if "verdict_after" in verification else verification.get("reason", ""))
    return ["", f"all fixes together ({codes}): {verification.get('status', '').replace('_', ' ')}, {after}"]


LAYER_LEGEND = ("out_grad: ||dL/d output||, the root mean square over the probe batches of the norms the gradient "
                "findings fit; grad_norm: ||dL/dW||; - where a layer has no such value")


def _layer_lines(layers: list[dict[str, Any]]) -> list[str]:
    header = (f"{'depth':>5}  {'layer':<32} {'kind':<20} {'params':>10} {'out_grad':>11} {'grad_norm':>11}"
              f" {'grad/weight':>11}")
    rows = [
        f"{layer['depth']:>5}  {layer['name'][:32]:<32} {layer['kind'][:20]:<20} {layer['parameters']:>10}"
        f" {_number((layer.get('output_grad') or {}).get('norm')):>11}"
        f" {_number(layer['grad_norm'] if layer['parameters'] else None):>11}"
        f" {_number(layer['grad_to_weight'] if layer['parameters'] else None):>11}"
        for layer in layers
    ]
    return [header, *rows, "", LAYER_LEGEND]


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3e}"
