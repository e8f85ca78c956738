"""The report document (contract v1), built the same way from database rows and from the engine."""

from __future__ import annotations

from typing import Any

REPORT_VERSION = 1


def build_report(
    *,
    audit_id: str | None,
    network: dict[str, Any],
    setup: dict[str, Any],
    layers: list[dict[str, Any]],
    findings: list[dict[str, Any]],
    verdict: str,
) -> dict[str, Any]:
    """The JSON report of a succeeded audit."""
    return {
        "id": audit_id,
        "status": "succeeded",
        "report_version": REPORT_VERSION,
        "network": network,
        "setup": setup,
        "layers": layers,
        "findings": findings,
        "verdict": verdict,
    }


def render_text(report: dict[str, Any]) -> str:
    """A terminal-friendly rendering: verdict, findings with their fixes, then the layer table."""
    network = report["network"]
    lines = [
        f"verdict: {report['verdict'].upper()}",
        f"network: {network['format']}, {network['parameters']:,} parameters in {network['layers']} layers",
        f"setup:   {_setup_line(report['setup'])}",
        "",
    ]
    lines += _findings_lines(report["findings"]) + [""] + _layer_lines(report["layers"])
    return "\n".join(lines)


def _setup_line(setup: dict[str, Any]) -> str:
    keys = ("device", "batch_size", "seed", "loss")
    return ", ".join(f"{key}={setup[key]}" for key in keys if key in setup)


def _findings_lines(findings: list[dict[str, Any]]) -> list[str]:
    if not findings:
        return ["no findings"]
    lines = []
    for finding in findings:
        lines.append(f"[{finding['severity']}] {finding['code']}: {finding['title']}")
        lines += [f"    fix ({rec['code']}): {rec['text']}" for rec in finding.get("recommendations", [])]
    return lines


def _layer_lines(layers: list[dict[str, Any]]) -> list[str]:
    header = f"{'depth':>5}  {'layer':<32} {'kind':<20} {'params':>10} {'grad_norm':>11} {'grad/weight':>11}"
    rows = [
        f"{layer['depth']:>5}  {layer['name'][:32]:<32} {layer['kind'][:20]:<20} {layer['parameters']:>10}"
        f" {layer['grad_norm']:>11.3e} {layer['grad_to_weight']:>11.3e}"
        for layer in layers
    ]
    return [header, *rows]
